# syntax=docker/dockerfile:1
# One image for both parts of oomguard: `oomguard operator` (the chart's Deployment) and
# `oomguard agent` (the chart's DaemonSet, which runs it as root with only CAP_KILL).
#   docker build -t oomguard:0.1.0 .
# What tests/chart/test_dockerfile.py checks without a Docker engine: docs/install.md.

# Python 3.11 (pyproject.toml's requires-python) on Debian 12, pinned by tag and digest.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
# A virtual environment without pip, filled by the base image's pip: every dependency at
# the exact version constraints.txt pins (wheels: nothing is compiled).
RUN python -m venv --without-pip /opt/oomguard \
 && pip --python /opt/oomguard/bin/python install --no-cache-dir -c constraints.txt .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="oomguard" \
      org.opencontainers.image.description="Group-aware, priority-driven OOM protection for Kubernetes nodes: operator and node agent" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/oomguard /opt/oomguard
ENV PATH=/opt/oomguard/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Non-root by default (the operator); the agent's DaemonSet runs it as root.
USER 65532:65532
ENTRYPOINT ["oomguard"]
CMD ["--help"]
