"""The Dockerfile, without a Docker engine: its base is pinned, it installs the project
with every dependency pinned by constraints.txt, its final stage builds nothing and runs as
a non-root user, its entry point is the project's console script, and the build stage's
install command, run as written in a clean virtual environment, installs exactly the
pinned versions and a working `oomguard`. No image is built here: docs/install.md says
what that leaves unproven.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.helm import ROOT, render

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BASE = re.compile(r"python:(?P<minor>3\.\d+)\.\d+-slim-bookworm@sha256:[0-9a-f]{64}")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse() -> list[Stage]:
    """The Dockerfile's stages (continuations joined, comments dropped, a global ARG's
    default expanded in FROM)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            base, *alias = rest.split()
            for name, value in args.items():
                base = base.replace(f"${{{name}}}", value)
            stages.append(Stage(base, alias[-1] if alias else None))
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def runtime_closure() -> dict[str, str]:
    """Every distribution oomguard needs at run time (no extras), with the version
    installed here: name -> version."""
    found: dict[str, str] = {}
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        dist = distribution(requirement.name)
        found[name] = dist.version
        for raw in dist.requires or ():
            dependency = Requirement(raw)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                todo.append(dependency)
    return found


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {canonicalize_name(name): version for line in lines if "==" in line
            for name, version in [line.split("#")[0].strip().split("==")]}


def test_base_image_is_pinned_by_tag_and_digest() -> None:
    """Both stages start from the same Python, the minor version pyproject.toml wants."""
    stages = parse()
    assert len(stages) == 2
    minor = re.fullmatch(r">=(3\.\d+),<3\.\d+", PYPROJECT["project"]["requires-python"])
    assert minor is not None
    for stage in stages:
        pinned = BASE.fullmatch(stage.base)
        assert pinned, f"FROM {stage.base}: not python:3.X.Y-slim-bookworm@sha256:..."
        assert pinned["minor"] == minor[1]
    assert stages[0].base == stages[1].base


def test_build_stage_installs_the_project_with_the_pinned_dependencies() -> None:
    build, _ = parse()
    assert "constraints.txt" in " ".join(build.all("COPY"))
    (install,) = [r for r in build.all("RUN") if " install " in r]
    words = shlex.split(install)
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert words[-1] == "." and "--no-deps" not in words


def test_constraints_pin_every_runtime_dependency() -> None:
    """`pip install -c constraints.txt .` is reproducible only if every distribution it
    resolves is pinned, at the version the tests ran with."""
    pinned = pins()
    closure = runtime_closure()
    assert {"kopf", "kubernetes", "pydantic", "aiohttp"} <= closure.keys()
    unpinned = sorted(closure.keys() - pinned.keys())
    assert not unpinned, f"not pinned in constraints.txt: {unpinned}"
    differ = {n: (v, pinned[n]) for n, v in closure.items() if v != pinned[n]}
    assert not differ, f"installed here vs constraints.txt: {differ}"


def test_final_stage_builds_nothing_and_runs_as_non_root() -> None:
    """No RUN at all (so no compiler, no package manager at work), only the build
    stage's virtual environment; a numeric, non-root user (runAsNonRoot can check it)."""
    build, final = parse()
    assert final.all("RUN") == []
    assert final.all("COPY") == [f"--from={build.name} /opt/oomguard /opt/oomguard"]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    assert any(e.startswith("PATH=/opt/oomguard/bin:") for e in final.all("ENV"))


def test_oci_labels_describe_the_project() -> None:
    _, final = parse()
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"',
                             " ".join(final.all("LABEL"))))
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.version"] == PYPROJECT["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.description"]


def test_entry_point_is_the_console_script_the_chart_runs() -> None:
    _, final = parse()
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint == '["oomguard"]'
    assert PYPROJECT["project"]["scripts"]["oomguard"] == "oomguard.cli:main"
    for manifest in render(None):
        if manifest["kind"] in ("Deployment", "DaemonSet"):
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                assert container["command"] == ["oomguard"]


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore lets through exactly the COPY sources, and they exist."""
    build, _ = parse()
    sources = {word.rstrip("/") for copy in build.all("COPY") for word in copy.split()[:-1]}
    assert sources == {"pyproject.toml", "constraints.txt", "README.md", "operator"}
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert allowed == sources
    assert all((ROOT / source).exists() for source in sources)


def test_image_install_command_in_a_clean_environment(tmp_path: Path) -> None:
    """The build stage's RUN line as written, in a copy of the build context, from PyPI
    (as `make` installs): only the environment's path and the pip that fills it change.
    Every distribution it installs is pinned, every module is there, and the console
    script runs both commands."""
    build, final = parse()
    context = tmp_path / "src"
    context.mkdir()
    for source in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(ROOT / source, context / source)
    shutil.copytree(ROOT / "operator" / "oomguard", context / "operator" / "oomguard",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (command,) = [r for r in build.all("RUN") if " install " in r]
    image = tmp_path / "image"
    command = command.replace("/opt/oomguard", str(image))
    command = command.replace("python -m venv", f"{sys.executable} -m venv")
    command = command.replace("pip --python", f"{sys.executable} -m pip --python")
    subprocess.run(["sh", "-c", command], cwd=context, check=True, timeout=300,
                   env={**os.environ, **dict(e.split("=", 1) for e in
                                             " ".join(build.all("ENV")).split())})
    python = image / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print('\\n'.join("
         "f'{d.name}=={d.version}' for d in m.distributions()))"],
        capture_output=True, text=True, check=True).stdout.split()
    pinned = pins()
    names = {canonicalize_name(line.split("==")[0]) for line in installed}
    assert "pip" not in names, "the image's environment has no pip"
    assert names - {"oomguard"} == runtime_closure().keys()
    for line in installed:
        name, version = line.split("==")
        if canonicalize_name(name) != "oomguard":
            assert pinned[canonicalize_name(name)] == version, line
    package = next((image / "lib").glob("python3.*/site-packages/oomguard"))
    source = ROOT / "operator" / "oomguard"
    missing = {p.relative_to(source) for p in source.rglob("*.py")} - \
        {p.relative_to(package) for p in package.rglob("*.py")}
    assert not missing, f"not installed: {sorted(map(str, missing))}"
    (entrypoint,) = final.all("ENTRYPOINT")
    script = image / "bin" / json.loads(entrypoint)[0]
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                             check=True)
    assert version.stdout.strip() == f"oomguard {PYPROJECT['project']['version']}"
    for command_name in ("operator", "agent"):
        subprocess.run([str(script), command_name, "--help"], capture_output=True, check=True)
