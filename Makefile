# fmexp: `make test` and `make repro` each set up .venv from the pinned constraints when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fmexp-installed

.PHONY: install lint docs test test-fast repro bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,lint,docs,cov,postgres,dashboard,plots,mlflow]'
	# torchcfm, the reference of tests/flow/test_bridges.py: its matchers import only torch, numpy and POT,
	# while its declared dependencies (torchdyn, lightning, ...) are GBs the tests never load
	$(PY) -m pip install --quiet --no-deps 'torchcfm==1.0.7'
	$(PY) -m fmexp offline-plots
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check fmexp tests benchmarks examples
	$(VENV)/bin/ruff format --check fmexp tests benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m fmexp dvc-yaml --check

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow and not e2e and not postgres and not chromium" \
		--cov=fmexp.flow --cov=fmexp.networks --cov=fmexp.config --cov-report=term

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

repro: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/time_to_quality.py
	$(PY) benchmarks/divergence.py
	$(PY) benchmarks/sweep_workers.py
	$(PY) benchmarks/unet_throughput.py
	$(PY) benchmarks/curve_tolerance.py
	$(PY) benchmarks/ladder_cost.py

clean:
	rm -rf $(VENV) .pytest_cache
