"""Decision writes that must not be lost: the agent's own decisions (made acting alone,
perhaps while the API server was unreachable) and the outcome of executed ones.

They are written in order by one thread that keeps retrying while the API server does not
answer, so that a decision is recorded as soon as it answers again. Refusals that heal are
retried too: 401 and 403 (a kube-apiserver that is starting serves requests before its
authorizer has loaded the RBAC rules, and refuses them; a rotated token). Other refusals
(other than a create that an earlier, unanswered attempt already made) are logged and
dropped: retrying cannot fix them.

With a journal directory on the node's disk (the agent's --state-dir), each write is kept
there, whole (written to a temporary file and renamed), from when it is queued until it is
done: an agent restarted before the API server came back finds them and writes them then.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from oomguard.api import DECISIONS, OOMDecision, OOMDecisionStatus
from oomguard.decisions import for_create
from oomguard.kube import Backoff, NodeApi, UnreachableError

log = logging.getLogger(__name__)

RETRIED_REFUSALS = (401, 403)


class DecisionRecorder:
    """A queue of decision writes, served by its own thread; kept in `journal` (if given)
    until written."""

    def __init__(self, api: NodeApi, *, backoff: Backoff | None = None,
                 journal: Path | None = None) -> None:
        self.api = api
        self.journal = journal
        self._jobs: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._kept: dict[int, Path] = {}
        self._sequence = 0
        self._wakeup = threading.Condition()
        self._stopping = False
        self._backoff = backoff or Backoff(first=0.1, cap=1.0)
        self._thread = threading.Thread(target=self._run, name="decision-records", daemon=True)

    def record(self, decision: OOMDecision) -> None:
        """Create a decision the agent made, then write its status."""
        self._keep({"record": decision.wire()},
                   f"record {decision.metadata.name}", lambda: self._create(decision))

    def finish(self, name: str, status: OOMDecisionStatus) -> None:
        """Write the outcome of a decision the agent executed (its only writer meanwhile)."""
        self._keep({"outcome": name, "status": status.wire()},
                   f"outcome of {name}", lambda: self._status(name, status))

    def recover(self) -> int:
        """Queue the writes an earlier run kept in the journal and did not do; how many."""
        if self.journal is None or not self.journal.is_dir():
            return 0
        found = sorted((p for p in self.journal.glob("*.json") if p.stem.isdigit()),
                       key=lambda p: int(p.stem))
        for path in found:
            try:
                kept = json.loads(path.read_text())
                if "record" in kept:
                    decision = OOMDecision.model_validate(kept["record"])
                    self._queue(f"record {decision.metadata.name} (kept)",
                                functools.partial(self._create, decision), path)
                else:
                    name, status = kept["outcome"], OOMDecisionStatus.model_validate(
                        kept["status"])
                    self._queue(f"outcome of {name} (kept)",
                                functools.partial(self._status, name, status), path)
            except (OSError, ValueError, KeyError) as error:
                log.error("%s: unreadable decision write, dropped: %s", path, error)
                path.unlink(missing_ok=True)
        if found:
            log.warning("%d decision writes kept from before the restart: writing them",
                        len(found))
        return len(found)

    def _keep(self, body: dict[str, Any], what: str, job: Callable[[], None]) -> None:
        path = None
        if self.journal is not None:
            self.journal.mkdir(parents=True, exist_ok=True)
            with self._wakeup:
                self._sequence = max(self._sequence + 1, _next_sequence(self.journal))
                path = self.journal / f"{self._sequence}.json"
            temporary = path.with_suffix(".tmp")
            with open(temporary, "w") as file:
                json.dump(body, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        self._queue(what, job, path)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Give queued writes up to `timeout` seconds, then give up on them."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        self._thread.join(timeout)
        with self._wakeup:
            lost = [what for what, _ in self._jobs]
            self._jobs.clear()
            self._wakeup.notify_all()
        if lost:
            log.warning("stopping with %d decision writes not done: %s", len(lost),
                        ", ".join(lost))

    def _queue(self, what: str, job: Callable[[], None], kept: Path | None = None) -> None:
        with self._wakeup:
            self._jobs.append((what, job))
            if kept is not None:
                self._kept[id(job)] = kept
            self._wakeup.notify_all()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._jobs and not self._stopping:
                    self._wakeup.wait()
                if not self._jobs:
                    return
                what, job = self._jobs[0]
            try:
                job()
            except UnreachableError as error:
                log.debug("%s: %s; retrying", what, error)
                with self._wakeup:
                    self._wakeup.wait(self._backoff.delay())
                continue
            except ApiException as error:
                if error.status in RETRIED_REFUSALS:
                    log.warning("%s: %s %s; retrying", what, error.status, error.reason)
                    with self._wakeup:
                        self._wakeup.wait(self._backoff.delay())
                    continue
                log.error("%s: refused (%s %s): %s", what, error.status, error.reason,
                          error.body)
            except Exception:  # the thread must outlive one bad write
                log.exception("%s: dropped", what)
            self._backoff.reset()
            with self._wakeup:
                if self._jobs and self._jobs[0][1] is job:
                    self._jobs.popleft()
                kept = self._kept.pop(id(job), None)
            if kept is not None:
                kept.unlink(missing_ok=True)

    def _create(self, decision: OOMDecision) -> None:
        body, status = for_create(decision)
        try:
            self.api.create(DECISIONS, body)
        except ApiException as error:
            if error.status != 409:  # 409: an earlier attempt created it, unanswered
                raise
        if status is not None:
            self.api.merge_status(DECISIONS, decision.metadata.name, {"status": status})

    def _status(self, name: str, status: OOMDecisionStatus) -> None:
        self.api.merge_status(DECISIONS, name, {"status": status.wire()})


def _next_sequence(journal: Path) -> int:
    """One past the highest kept write's number: writes keep their order across runs."""
    numbers = [int(p.stem) for p in journal.glob("*.json") if p.stem.isdigit()]
    return max(numbers, default=0) + 1
