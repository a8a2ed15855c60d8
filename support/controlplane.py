"""The tests' Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager of
one Kubernetes release, built from tests/cluster/go.mod, on 127.0.0.1.

Binaries are built once per machine into a cache outside the clone, keyed by the Go
module's go.mod and go.sum (`OOMGUARD_CACHE`, default `~/.cache/oomguard`). Each control
plane gets a throw-away PKI (a CA, serving and client certificates, service-account signing
keys), free ports, and a state directory holding its kubeconfig, logs and audit log; it is
removed when the control plane stops.

`python -m support up|down [--state DIR]` is `make cluster` / `make
cluster-down`; the pytest session starts one through the same `ControlPlane` class.
See docs/testing.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[1]
GO_MODULE = ROOT / "tests" / "cluster"
COMMANDS = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}
SERVICE_CIDR = "10.96.0.0/16"
WORKLOAD_CONTROLLERS = ("job-controller", "cronjob-controller", "deployment-controller",
                        "replicaset-controller", "statefulset-controller",
                        "daemonset-controller", "replicationcontroller-controller")
"""Controllers the test controller manager does not run (docs/testing.md)."""
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # The bodies of writes to oomguard's own objects: what the agent publishes.
        {"level": "Request", "verbs": ["create", "update", "patch"],
         "resources": [{"group": "oomguard.io"}]},
        {"level": "Metadata"},
    ],
}
"""Every request is recorded with its user, verb, object and answer; tests read the log to
see which calls each component made (docs/testing.md)."""


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why, with the
    tail of the failing component's log."""


def cache_dir() -> Path:
    base = os.environ.get("OOMGUARD_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "oomguard"
    return Path(base) / "controlplane"


def build_key() -> str:
    """What the binaries are built from: the module's go.mod and go.sum, and how."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((GO_MODULE / name).read_bytes())
    digest.update(json.dumps([COMMANDS, _version_flags()]).encode())
    return digest.hexdigest()[:16]


def binaries(log: Any = sys.stderr) -> Path:
    """The directory of the three binaries, built first if this machine has not yet built
    them for this go.sum. Concurrent callers wait for one build."""
    target = cache_dir() / build_key()
    if all((target / name).exists() for name in COMMANDS):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((target / name).exists() for name in COMMANDS):
            return target
        go = shutil.which("go")
        if go is None:
            raise ControlPlaneError("the test control plane is built with Go (1.26), "
                                    "which is not on PATH")
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        print(f"building the test control plane into {target} (once per machine: about "
              "10 minutes and 2 GB of Go module and build caches)", file=log, flush=True)
        started = time.monotonic()
        for name, package in COMMANDS.items():
            result = subprocess.run(
                [go, "build", f"-ldflags=-s -w {_version_flags()}", "-o", str(partial / name),
                 package], cwd=GO_MODULE, capture_output=True, text=True, check=False,
                env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"})
            if result.returncode != 0:
                shutil.rmtree(partial, ignore_errors=True)
                raise ControlPlaneError(f"go build {package} failed:\n{result.stderr[-4000:]}")
            print(f"  built {name} ({time.monotonic() - started:.0f}s)", file=log, flush=True)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        for stale in target.parent.iterdir():  # builds of an earlier go.sum
            if stale.name.split(".")[0] != target.name:
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        return target


def kubernetes_version() -> str:
    """The Kubernetes release the module builds (its k8s.io/kubernetes requirement)."""
    found = re.search(r"^(?:require)?\s*k8s\.io/kubernetes (v\S+)$",
                      (GO_MODULE / "go.mod").read_text(), re.MULTILINE)
    if found is None:
        raise ControlPlaneError(f"{GO_MODULE / 'go.mod'} requires no k8s.io/kubernetes")
    return found[1]


def _version_flags() -> str:
    """What the release's own build stamps in (hack/lib/version.sh): without it the
    servers say v0.0.0, which kubectl and helm cannot parse."""
    version = kubernetes_version()
    major, minor = version[1:].split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor,
              "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z"}
    return " ".join(f"-X {package}.{key}={value}" for key, value in stamps.items()
                    for package in ("k8s.io/component-base/version",
                                    "k8s.io/client-go/pkg/version"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- The throw-away PKI ---------------------------------------------------------------

def _pem_key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    """The files of a control plane's PKI, all under one directory."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca(self) -> Path:
        return self.path("ca.crt")

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        until = now + datetime.timedelta(days=2)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oomguard-test-ca")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(until)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                           False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        (directory / "ca.crt").write_bytes(_pem_cert(ca))
        (directory / "ca.key").write_bytes(_pem_key(ca_key))

        def issue(name: str, common_name: str, *, groups: tuple[str, ...] = (),
                  server: bool = False) -> None:
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([
                *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now).not_valid_after(until)
                       .add_extension(x509.ExtendedKeyUsage([
                           ExtendedKeyUsageOID.SERVER_AUTH if server
                           else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
            if server:
                service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
                builder = builder.add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default.svc.cluster.local"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(service_ip)]), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            (directory / f"{name}.crt").write_bytes(_pem_cert(cert))
            (directory / f"{name}.key").write_bytes(_pem_key(key))

        issue("apiserver", "kube-apiserver", server=True)
        issue("admin", "oomguard-test-admin", groups=("system:masters",))
        issue("controller-manager", "system:kube-controller-manager")
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (directory / "sa.key").write_bytes(_pem_key(sa_key))
        (directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(directory)


def kubeconfig(server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
               token: str | None = None, user: str = "admin") -> dict[str, Any]:
    """A kubeconfig with everything embedded, for a client certificate or a token."""
    credentials: dict[str, str] = {}
    if cert is not None and key is not None:
        credentials = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    if token is not None:
        credentials = {"token": token}
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [{"name": "oomguard-test", "cluster": {
            "server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "oomguard-test", "user": user,
                                                "namespace": "default"}}],
    }


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# --- Processes --------------------------------------------------------------------------

_PRCTL = ctypes.CDLL(None).prctl
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies, so
    that an interrupted or killed test run leaves no control plane behind. Only a call
    resolved before the fork: nothing that could take a lock another thread held."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, detached: bool) -> None:
        if not detached and threading.current_thread() is not threading.main_thread():
            # PR_SET_PDEATHSIG fires when the *thread* that started the child ends: one of
            # asyncio's worker threads would take the component down with it.
            raise ControlPlaneError(f"start {self.name} from the main thread")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=None if detached else _die_with_parent)  # noqa: PLW1509

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ControlPlaneError(f"{self.name} exited with {self.process.returncode}:\n"
                                    f"{self.tail()}")


@dataclass
class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager, started in `state` (created;
    removed by `stop`). `detached` components outlive this process (`make cluster`)."""

    state: Path
    detached: bool = False
    components: dict[str, Component] = field(default_factory=dict)
    etcd_url: str = ""
    server: str = ""

    @property
    def pki(self) -> Pki:
        return Pki(self.state / "pki")

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.state / "audit.log"

    def start(self, timeout: float = 120.0) -> ControlPlane:
        bin_dir = binaries()
        shutil.rmtree(self.state, ignore_errors=True)  # throw-away: no earlier run's data
        self.state.mkdir(parents=True)
        pki = Pki.create(self.state / "pki")
        (self.state / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.server = f"https://127.0.0.1:{api_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self.components = {
            "etcd": Component("etcd", [
                str(bin_dir / "etcd"), "--name=default",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}", "--log-level=warn",
                "--unsafe-no-fsync",  # throw-away data: durability buys nothing here
            ], self.state / "etcd.log"),
            "kube-apiserver": Component("kube-apiserver", [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",  # loopback: no kubernetes Endpoints
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki.path('apiserver.crt')}",
                f"--tls-private-key-file={pki.path('apiserver.key')}",
                f"--client-ca-file={pki.ca}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.path('sa.pub')}",
                f"--service-account-signing-key-file={pki.path('sa.key')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--audit-policy-file={self.state / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}", "--audit-log-format=json",
                "--audit-log-maxsize=0",
                "--profiling=false", "--v=1",
            ], self.state / "kube-apiserver.log"),
            "kube-controller-manager": Component("kube-controller-manager", [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self._component_kubeconfig('controller-manager')}",
                f"--authentication-kubeconfig={self.state / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={self.state / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
                f"--service-account-private-key-file={pki.path('sa.key')}",
                f"--root-ca-file={pki.ca}", "--use-service-account-credentials",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Every controller but the workload controllers: with no scheduler and no
                # kubelet, tests and benchmarks write pods for their owners as a kubelet
                # would, and those controllers would fight them (release pods without
                # their selector, scale them down, create pods that never run).
                f"--controllers=*,{','.join(f'-{c}' for c in WORKLOAD_CONTROLLERS)}",
                "--leader-elect=false", "--v=1",
            ], self.state / "kube-controller-manager.log"),
        }
        self.admin_kubeconfig.write_text(yaml.safe_dump(kubeconfig(
            self.server, pki.ca, cert=pki.path("admin.crt"), key=pki.path("admin.key"))))
        try:
            self.components["etcd"].start(detached=self.detached)
            self._wait(self._etcd_healthy, "etcd", timeout)
            self.start_apiserver(timeout)
            self.components["kube-controller-manager"].start(detached=self.detached)
            self._wait(self._kcm_serving, "kube-controller-manager", timeout)
        except BaseException:
            self.stop()
            raise
        self._write_pids()
        return self

    def start_apiserver(self, timeout: float = 120.0) -> None:
        """Start kube-apiserver (again, after `stop_apiserver`) and wait for /readyz; then
        restart the controller manager. Its informers met the starting server's refusals
        (a starting kube-apiserver answers 403 before its authorizer has loaded RBAC) and
        back off for up to a minute; and it exits when the server goes away while it is
        still starting its controllers. A restart is what a node reboot gives it."""
        self.components["kube-apiserver"].start(detached=self.detached)
        self._wait(lambda: self.get("/readyz")[0] == 200, "kube-apiserver", timeout)
        manager = self.components.get("kube-controller-manager")
        if manager is not None and manager.process is not None:
            manager.stop()
            manager.start(detached=self.detached)
            self._wait(self._kcm_serving, "kube-controller-manager", timeout)
        self._write_pids()

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver: its clients see connections refused until it is back."""
        self.components["kube-apiserver"].stop()

    def stop(self) -> None:
        """Stop every component (the controller manager first) and remove the state."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            if name in self.components:
                self.components[name].stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def _component_kubeconfig(self, name: str) -> Path:
        path = self.state / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig(
            self.server, self.pki.ca, cert=self.pki.path(f"{name}.crt"),
            key=self.pki.path(f"{name}.key"), user=name)))
        return path

    def _write_pids(self) -> None:
        pids = {name: c.process.pid for name, c in self.components.items() if c.process}
        (self.state / "pids.json").write_text(json.dumps(pids))

    def _wait(self, ready: Callable[[], bool], name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for other in ("etcd", name):
                self.components[other].check_running()
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{name} was not ready within {timeout:.0f}s:\n"
                                        f"{self.components[name].tail()}")
            time.sleep(0.1)  # polling processes that are starting

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _kcm_serving(self) -> bool:
        port = next(a.split("=", 1)[1] for a in self.components["kube-controller-manager"].argv
                    if a.startswith("--secure-port="))
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2,
                                        context=context) as answer:
                return bool(answer.status == 200)
        except urllib.error.HTTPError:
            return True  # serving; /healthz wants credentials
        except OSError:
            return False

    def ssl_context(self) -> ssl.SSLContext:
        """The admin's TLS context: trusts the CA, presents the admin certificate."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))
        return context

    def get(self, path: str) -> tuple[int, str]:
        """GET `path` as the admin: (status, body), (0, "") when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.server}{path}", timeout=5,
                                        context=self.ssl_context()) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def compact_etcd(self) -> int:
        """Compact etcd up to its current revision (and defragment away nothing): watches
        from any older resourceVersion then get `410 Gone`. Returns the revision."""
        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(f"{self.etcd_url}{path}",
                                             data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                return dict(json.loads(answer.read()))
        revision = int(call("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
                       ["header"]["revision"])
        call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    @classmethod
    def attach(cls, state: Path) -> Iterator[int]:
        """The pids a detached control plane in `state` left (for `down`)."""
        with contextlib.suppress(OSError, ValueError):
            yield from json.loads((state / "pids.json").read_text()).values()


def _up(state: Path) -> int:
    if (state / "pids.json").exists():
        print(f"a control plane already runs from {state}: `make cluster-down` first",
              file=sys.stderr)
        return 1
    plane = ControlPlane(state, detached=True).start()
    print(f"control plane up: {plane.server}\n"
          f"  export KUBECONFIG={plane.admin_kubeconfig}\n"
          f"  logs and audit log in {state}; stop it with `make cluster-down`")
    return 0


def _down(state: Path) -> int:
    for pid in ControlPlane.attach(state):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in ControlPlane.attach(state):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)  # waiting for a process of another session to exit
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state, ignore_errors=True)
    print(f"control plane down; {state} removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m support",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "build"])
    parser.add_argument("--state", type=Path, default=ROOT / ".cluster",
                        help="state directory (default: .cluster in the repository)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(binaries())
            return 0
        return _up(args.state.resolve()) if args.command == "up" else _down(
            args.state.resolve())
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
