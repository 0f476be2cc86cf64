# Kubeloop — the verbs a person types. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
# Every install goes through uv, configured from this machine's pip settings (hack/uvpip.py):
# the same versions pip picks, ~10x faster. uv writes no bytecode: hack/warm_bytecode.py imports
# the heavy libraries once after an install, which writes it for what is used. Where
# PYTHONDONTWRITEBYTECODE is set nothing would ever write it, and each of the hundreds of
# processes the tests start would compile what it imports again (torch and scikit-learn: 15 s
# instead of 6 s), so it is unset for what make runs.
UVPIP := $(PYTHON) hack/uvpip.py install --quiet
unexport PYTHONDONTWRITEBYTECODE
PYEXE = $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)
# Test modules run in parallel workers, the `slow`-marked ones first (tests/conftest.py); most
# tests wait on processes and the API rather than compute, so more workers than cores pay.
TEST_WORKERS ?= 4
PYTEST_ARGS ?= -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 --tb=short

.DEFAULT_GOAL := help
.PHONY: help install system-deps tools test test-deps reliability lint crds check-crds demo bench bench-venvs venv-evidently venv-nannyml venv-checkov image-venvs e2e clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install: ## install kubeloop (editable) with every extra into the current Python
	@# torch first, at the exact CPU build on disk: any other spec pulls GBs of CUDA wheels.
	$(PYTHON) -c "import torch" 2>/dev/null || $(UVPIP) --python $(PYEXE) torch==2.13.0
	$(UVPIP) --python $(PYEXE) -e '.[dev]'
	$(PYTHON) hack/warm_bytecode.py

system-deps: ## install Prometheus, Pushgateway, promtool, wrk, hey (Debian packages)
	./hack/install-system-deps.sh

tools: ## put helm 4 and kubectl into .tools/bin (git-ignored)
	./hack/install-tools.sh $(TOOLS)

crds: ## regenerate crds/ from the API models (and the chart's copy)
	$(PYTHON) -m kubeloop.cli crds --out crds
	rm -f charts/kubeloop/crds/*.yaml && cp crds/*.yaml charts/kubeloop/crds/

check-crds: ## fail when crds/ is stale
	$(PYTHON) -m kubeloop.cli crds --out crds --check

lint: ## ruff, mypy --strict and the import-layer contracts
	$(PYTHON) -m ruff check operator tests bench hack
	$(PYTHON) -m ruff format --check operator tests bench hack
	$(PYTHON) -m mypy
	@# the console script beside the interpreter: pyenv's shims know of it only after a rehash
	$(dir $(PYEXE))lint-imports

test: test-deps ## install what the tests need (Evidently venv included: PSI is checked against it), then run them
	$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
	exit $$rc

# The installs that do not need each other run side by side (one core each: uv, a download,
# bytecode; checkov's and Evidently's own venvs too: the test run after them is CPU-bound, this
# phase is not); the image venvs then take the dev environment's bytecode (see image-venvs).
test-deps:
	$(MAKE) --no-print-directory -j4 --output-sync=target install system-deps tools venv-evidently venv-nannyml venv-checkov
	$(MAKE) --no-print-directory image-venvs

reliability: install system-deps tools ## the long soak of tests/reliability (50 killed runs, 10x faults); figures in RELIABILITY.md
	set -o pipefail; KUBELOOP_SOAK=1 $(PYTHON) -m pytest tests/reliability -s -q --timeout 3000 | tee reliability.log | grep -E "RELIABILITY|passed|failed"

demo: install ## the whole loop on this machine: train, serve, drift, retrain, roll out
	$(PYTHON) -m kubeloop.cli local demo

venv-checkov: ## checkov in its own venv (tests/chart/test_checkov.py); here, beside the other installs, not inside the test run
	./hack/install-checkov.sh

venv-evidently: ## Evidently 0.7 in its own venv (pandas<3): the drift bench and the PSI agreement test
	test -x .venv-bench-evidently/bin/python || ($(PYTHON) -m venv --without-pip .venv-bench-evidently && \
	  $(UVPIP) --python .venv-bench-evidently/bin/python 'evidently==0.7.*' 'pandas<3' && \
	  .venv-bench-evidently/bin/python -c 'import evidently.legacy.calculations.stattests.psi')
	@# ^ the import writes the bytecode of what the PSI test imports: here, while other installs
	@# run, instead of inside that test (tens of CPU seconds, minutes on a loaded machine).

venv-nannyml: ## NannyML 0.13 in its own venv: the CBPE agreement test (tests/workloads/monitor/test_performance.py)
	@# NannyML imports statsmodels without declaring it; pandas<3 as for Evidently. About 40 s here.
	test -x .venv-bench-nannyml/bin/python || ($(PYTHON) -m venv --without-pip .venv-bench-nannyml && \
	  $(UVPIP) --python .venv-bench-nannyml/bin/python 'nannyml==0.13.1' statsmodels 'pandas<3' && \
	  .venv-bench-nannyml/bin/python -c 'import nannyml.performance_estimation.confidence_based')
	@# ^ the import writes the bytecode the test's import needs, here rather than inside the test.

image-venvs: ## each image's Python environment as its Dockerfile installs it, in .venv-image-<name> (rebuilt when a Dockerfile or pyproject.toml changes)
	@# tests/images runs what the operator runs in each image inside them: the dev environment
	@# has every extra, so a package an image lacks shows only there.
	$(PYTHON) -m tests.images.imageenv

bench-venvs: venv-evidently ## separate venvs: benchmark peers (Evidently 0.7; MLServer 1.7; KServe) and the monitor image's packages
	@# The drift bench runs `kubeloop monitor` with exactly what images/monitor installs (.[monitor]),
	@# not the dev environment (whose pandas, pulled in by pyarrow.dataset, the image does not have).
	test -x .venv-bench-monitor/bin/python || ($(PYTHON) -m venv .venv-bench-monitor && \
	  $(UVPIP) --python .venv-bench-monitor/bin/python -e '.[monitor]')
	@# MLServer 1.7 (serving bench): same scikit-learn and xgboost builds as ours so both load one
	@# model file; uvloop<0.22: newer uvloop breaks MLServer 1.7's parallel inference workers at
	@# start. mlserver-xgboost goes in with --no-deps: it requires `xgboost`, the CUDA build
	@# (a GPU NCCL wheel), where we run xgboost-cpu, which provides the same module.
	.venv-bench-mlserver/bin/python -c 'import mlserver_sklearn, mlserver_xgboost' 2>/dev/null || \
	  ($(PYTHON) -m venv .venv-bench-mlserver && \
	  $(UVPIP) --python .venv-bench-mlserver/bin/python 'mlserver==1.7.*' 'mlserver-sklearn==1.7.*' \
	  "scikit-learn==$$($(PYTHON) -c 'import sklearn; print(sklearn.__version__)')" 'uvloop<0.22' \
	  "xgboost-cpu==$$($(PYTHON) -c 'import importlib.metadata as m; print(m.version("xgboost-cpu"))')" && \
	  $(UVPIP) --python .venv-bench-mlserver/bin/python --no-deps 'mlserver-xgboost==1.7.*')
	@# KServe's Python ModelServer (serving bench, digits CNN) with the same torch build as ours
	@# (the CPU wheel pip finds first here; see `install`).
	.venv-bench-kserve/bin/python -c 'import kserve, torch' 2>/dev/null || \
	  ($(PYTHON) -m venv .venv-bench-kserve && \
	  $(UVPIP) --python .venv-bench-kserve/bin/python 'kserve==0.21.*' \
	  "torch==$$($(PYTHON) -c 'import torch; print(torch.__version__.split("+")[0])')")

bench: install bench-venvs ## benchmarks against the anchors (`make bench TOPICS=drift`); index in BENCHMARKS.md
	$(UVPIP) --python $(PYEXE) -e '.[dev,bench]'
	nice -n 10 $(PYTHON) -m bench $(TOPICS)

e2e: ## kind end-to-end (needs Docker and kind; skips cleanly without)
	$(PYTHON) -m pytest tests/e2e -m e2e -rs

clean: ## remove caches and tools
	rm -rf .tools .pytest_cache .mypy_cache .ruff_cache .demo
