# User entry points. Every target creates .venv when missing: torch==2.13.0 first (the CPU
# build; any other spec pulls gigabytes of CUDA packages), then the package with its dev extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
SEEDS ?=
DATA ?= generated

.PHONY: help install test test-fast lint format bandit data reproduce tables figures bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install everything

test: $(STAMP)  ## run the whole test suite (slow end-to-end checks included)
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## the tests without the slow end-to-end checks
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bandit: $(STAMP)  ## the 2-D risky bandit: every method x $(SEEDS) seeds, quick profile (~34 min on 2 idle CPUs)
	$(PY) reproduce.py bandit --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS))

data: $(STAMP)  ## generate the Stochastic-D4RL datasets from the shipped behaviour policies
	$(PY) reproduce.py data --profile $(PROFILE)

reproduce: $(STAMP)  ## the main job: the bandit, then Stochastic-D4RL (PROFILE=quick|paper, DATA=generated|d4rl)
	$(PY) reproduce.py all --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS)) --data $(DATA)

tables: $(STAMP)  ## regenerate every table from the records, without training
	$(PY) reproduce.py report --profile $(PROFILE)

figures: $(STAMP)  ## regenerate every figure from the records, without training
	$(PY) reproduce.py figures --profile $(PROFILE)

clean:  ## remove caches (never results/ or data/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
