# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each creates or reuses the virtualenv $(VENV) and installs what it needs by itself.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# On the project's CPU machines `torch==2.13.0` resolves to a local CPU wheel; override elsewhere
# (e.g. `make test TORCH_SPEC="torch>=2.3"`).
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_out

.PHONY: setup data test test-all demo bench-dense clean activate

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

data:
	bash scripts/ensure_data.sh

test: setup data
	$(PY) -m pytest -q -p no:cacheprovider

test-all: setup data
	$(PY) -m pytest -q -p no:cacheprovider -m ""

demo: setup data
	PY=$(PY) OUT=$(DEMO_OUT) bash scripts/demo.sh

bench-dense: setup data
	$(PY) benchmarks/dense_baselines.py

# The README's command-line examples call `secateurs`, which lives in $(VENV)/bin: this prints how to get it.
activate: setup
	@echo ". $(VENV)/bin/activate    # run this line in your shell; then \`secateurs --help\`"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
