"""Fixtures shared by the end-to-end tests (one real control plane per session, see
docs/testing.md), and the check that oomguard.kube.permissions lists exactly the API calls they
make."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from oomguard.kube.permissions import AGENT, OPERATOR, Permission

from support import ClusterSession, Kube, cluster_with_chart
from support.cluster import AGENT_ACCOUNT, OPERATOR_ACCOUNT, PROBE
from support.helm import NAMESPACE

LISTS = {f"system:serviceaccount:{NAMESPACE}:{OPERATOR_ACCOUNT}": OPERATOR,
         f"system:serviceaccount:{NAMESPACE}:{AGENT_ACCOUNT}": AGENT}


@pytest.fixture(scope="session")
def cluster_session() -> Iterator[ClusterSession]:
    """etcd, kube-apiserver and kube-controller-manager for the whole run, with the chart
    installed; stopped at the end, also when tests fail or the run is interrupted."""
    with cluster_with_chart(Path(tempfile.mkdtemp(prefix="oomguard-cluster-"))) as session:
        yield session


@pytest.fixture
def kube(cluster_session: ClusterSession) -> Iterator[Kube]:
    """This test's view of the session's cluster: its own names, its audit log."""
    view = Kube(cluster_session)
    yield view
    view.cleanup()


@pytest.fixture(autouse=True)
def _calls_are_listed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every API call the operator or an agent makes in a test is one that
    oomguard.kube.permissions lists (the chart's RBAC grants exactly those: anything else was
    refused with 403, which this names)."""
    yield
    kube = request.node.funcargs.get("kube")
    if isinstance(kube, Kube):
        calls = [c for c in kube.calls() if c.user_agent != PROBE]
        for username, listed in LISTS.items():
            used = {c.rbac for c in calls if c.username == username}
            _coverage.used[username] |= used
            unlisted = used - listed
            assert not unlisted, f"{username} API calls missing from oomguard.kube.permissions: " \
                f"{unlisted}"


class _Coverage:
    """The other direction: every listed permission is used by some end-to-end test, so
    that the chart's RBAC (which equals the lists) grants nothing that no code uses.

    Only a whole run can tell: the check runs at the end of a session that collected every
    test file under tests/, selected no test by node id, -k, -m, --lf or the like, and in
    which every test using the cluster passed (none skipped, e.g. for want of a cgroup
    sandbox). Otherwise it says in one line why it did not run."""

    def __init__(self) -> None:
        self.used: dict[str, set[Permission]] = {token: set() for token in LISTS}
        self.deselected = 0
        self.collected_files: set[Path] = set()
        self.e2e: set[str] = set()
        self.e2e_passed: set[str] = set()

    def why_incomplete(self, session: pytest.Session) -> str:
        tests = Path(__file__).parent
        missing = sorted(str(p.relative_to(tests)) for p in tests.rglob("test_*.py")
                         if p not in self.collected_files)
        if missing:
            return f"{len(missing)} test files not collected (e.g. {missing[0]})"
        if self.deselected:
            return f"{self.deselected} tests deselected"
        if any("::" in arg for arg in session.config.args):
            return "tests selected by node id"
        if not self.e2e:
            return "no end-to-end test collected"
        if left := self.e2e - self.e2e_passed:
            return f"{len(left)} end-to-end tests did not pass (e.g. {sorted(left)[0]})"
        return ""


_coverage = _Coverage()


def pytest_deselected(items: list[pytest.Item]) -> None:
    _coverage.deselected += len(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    _coverage.collected_files = {Path(item.path) for item in session.items}
    _coverage.e2e = {item.nodeid for item in session.items
                     if "kube" in getattr(item, "fixturenames", ())}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and report.nodeid in _coverage.e2e:
        _coverage.e2e_passed.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    why = _coverage.why_incomplete(session)
    if why:
        lines = [f"permissions coverage: not checked ({why}); it needs the whole test suite"]
    else:
        unused = {token: sorted(LISTS[token] - _coverage.used[token]) for token in LISTS}
        lines = [f"permissions coverage: listed in oomguard.kube.permissions, never used by "
                 f"{token}: {perm}" for token, perms in unused.items() for perm in perms]
        if lines:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            lines.append("permissions coverage: FAILED: remove them from "
                         "oomguard.kube.permissions (and so from the chart's RBAC), or test them")
        else:
            lines = ["permissions coverage: every listed permission is used by the "
                     "end-to-end tests"]
    if reporter is not None:
        reporter.write("\n")  # the progress line is still open
        for line in lines:
            reporter.write_line(line)
