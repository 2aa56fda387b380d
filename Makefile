# User entry points. Every target creates .venv when missing: torch first, then the package
# with its dev extras. TORCH (default torch==2.13.0) comes from pip's configured index, or
# from TORCH_INDEX when set (pip --index-url): the CPU build here (this machine's index holds
# it); on a GPU machine, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cu128 for the
# CUDA 12.8 build of the same torch (or .../whl/cpu for the CPU build anywhere). Then
# DEVICE=cuda (or the default, auto) trains on the GPU.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
SEEDS ?=
DATA ?= generated
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DEVICE ?=
# --device for the stages that train, evaluate or calibrate, only when DEVICE is set
DEVICE_OPT = $(if $(DEVICE),--device $(DEVICE))

.PHONY: help install test test-fast lint format bandit data reproduce tables figures frontier calibrate gpu-check clean browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install everything (TORCH=torch==2.13.0 from pip's index: the CPU build here; TORCH_INDEX=https://download.pytorch.org/whl/cu128 for a CUDA build)

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

bandit: $(STAMP)  ## the 2-D risky bandit: every method x the profile's seeds (SEEDS=N to change), PROFILE=quick by default (DEVICE=cpu|cuda|cuda:N to choose the device; default auto); see the README's bandit section for its time
	$(PY) reproduce.py bandit --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS)) $(DEVICE_OPT)

data: $(STAMP)  ## generate the Stochastic-D4RL datasets from the shipped behaviour policies
	$(PY) reproduce.py data --profile $(PROFILE)

reproduce: $(STAMP)  ## the main job: the bandit, then Stochastic-D4RL (PROFILE=quick|paper, DATA=generated|d4rl, DEVICE=auto|cpu|cuda|cuda:N)
	$(PY) reproduce.py all --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS)) --data $(DATA) $(DEVICE_OPT)

tables: $(STAMP)  ## regenerate every table from the records, without training
	$(PY) reproduce.py report --profile $(PROFILE)

figures: $(STAMP)  ## regenerate every figure from the records, without training
	$(PY) reproduce.py figures --profile $(PROFILE)

frontier: $(STAMP)  ## the risk-return frontier: RADAC and RAFMAC at every eta of the suite files' frontier: blocks, bandit then Stochastic-D4RL (PROFILE=quick)
	$(PY) reproduce.py frontier --profile $(PROFILE) $(DEVICE_OPT)
	$(PY) reproduce.py frontier --on suite --profile $(PROFILE) --data $(DATA) $(DEVICE_OPT)

calibrate: $(STAMP)  ## does the critic know the tail? every trained IQN critic of the profile's bandit and suite results against the true returns
	$(PY) reproduce.py calibrate --profile $(PROFILE) $(DEVICE_OPT)
	$(PY) reproduce.py calibrate --on suite --profile $(PROFILE) --data $(DATA) $(DEVICE_OPT)

gpu-check: $(STAMP)  ## the prepared device check (benchmarks/gpu_check.py, under 5 min on one GPU): CPU/GPU parity, the bandit's smoke panel, updates/s with and without seed stacks, TF32 and --compile, the paper profile's projected GPU-hours -> results/gpu_check.md (DEVICE=cuda:N to pick the GPU)
	$(PY) benchmarks/gpu_check.py --device $(or $(DEVICE),auto)

# Headless Chromium for tests/reports/test_browser.py (skipped without it). Only where the
# system allows: apt-get as root (or password-less sudo); anywhere else it says so and stops.
CHROMIUM_PKG := chromium-headless-shell
browser:  ## install headless Chromium for the HTML reports' browser test, where apt-get and root allow
	@if command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1; then \
		echo "headless Chromium is already installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "make browser: no apt-get here; install Chromium yourself (or set RAMAC_CHROMIUM) to run tests/reports/test_browser.py"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PKG) \
		|| echo "make browser: apt-get could not install $(CHROMIUM_PKG); the browser test will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PKG) \
		|| echo "make browser: apt-get could not install $(CHROMIUM_PKG); the browser test will be skipped"; \
	else \
		echo "make browser: installing Chromium needs root; run 'sudo apt-get install $(CHROMIUM_PKG)' (the browser test is skipped until then)"; \
	fi

clean:  ## remove caches (never results/ or data/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
