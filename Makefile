# Two commands do everything on a fresh machine: `make notebooks` and `make test`.
# Both create .venv and install the pinned requirements when needed.
PY ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= cpu
# a data folder for every notebook (as the notebooks see it: they run in notebooks/); empty: the notebooks' own
# default (data/, else the synthetic stand-in), so the committed parameters cell holds no machine path
DATA_DIR ?=
SEED ?= 42
PYTEST_ARGS ?=
# pytest-xdist workers for make test (auto: one per core; 0: the tests in this one process)
TEST_WORKERS ?= auto
SHELL := /bin/bash
UV_VERSION := 0.13.9
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONHASHSEED ?= 0

NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))

.PHONY: notebooks test test-min bench venv clean-outputs publish

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing pinned requirements into .venv (first run only; uv, else pip)"
	@# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (CI images, this
	@# machine) every process would then compile TensorFlow from source: 18 s an import instead of 5 s
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) 2>&1 | grep -v "^WARNING: Location" || true
	@if [ -x $(BIN)/uv ] && $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.txt \
		&& $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . ; then :; else \
		echo "uv unavailable or failed: installing with pip"; \
		$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true; \
		$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true; \
	fi
	@$(BIN)/python -c "import tensorflow, keras, keras_hub, cv2, sklearn, papermill, jax, safetensors, anndl" \
		|| { echo "error: .venv is incomplete (see the installer's output above)"; exit 1; }
	@touch $(STAMP)

## Run every notebook top-to-bottom on data/ (the real challenge folder, or the synthetic default)
## (papermill) at the cpu profile (learns on a 2-core CPU) and keep the rendered copies in notebooks/ (the parameters that ran
## written into each parameters cell, no injected cell). PROFILE=full for the report's settings (GPU).
notebooks: $(STAMP)
	@export ANNDL_COMMIT="$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git status --porcelain \
		--untracked-files=no 2>/dev/null | grep -q . && echo ' +changes')"; \
	echo "== rendering at commit $$ANNDL_COMMIT (every footer names this one)"; \
	for nb in $(NOTEBOOKS); do \
		echo "== $$nb (profile $(PROFILE), data $(or $(DATA_DIR),the notebooks' default))"; start=$$(date +%s); \
		ran="notebooks/.ran.$$(basename $$nb)"; \
		$(BIN)/papermill "$$nb" "$$ran" --cwd notebooks -k python3 --no-progress-bar -r PROFILE "$(PROFILE)" \
			-p SEED $(SEED) $(if $(DATA_DIR),-r DATA_DIR "$(DATA_DIR)") \
			&& $(BIN)/python notebooks/render.py "$$ran" "$$nb" || { rm -f "$$ran"; exit 1; }; \
		rm -f "$$ran"; \
		echo "== $$nb done in $$(( $$(date +%s) - start )) s"; \
	done

## Unit tests and a smoke run of every notebook on a tiny synthetic set.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 -n $(TEST_WORKERS) $(PYTEST_ARGS)

## The unit tests and notebooks 01 and 04 in a second venv at the lowest versions pyproject.toml states
## (uv's lowest-direct resolution), as an older hosted runtime would carry them.
VENV_MIN := $(CURDIR)/.venv-min
test-min: $(STAMP)
	@test -x $(VENV_MIN)/bin/python || $(PY) -m venv $(VENV_MIN)
	@$(BIN)/uv pip install -q --compile-bytecode --python $(VENV_MIN)/bin/python --resolution lowest-direct -e . \
		$$(grep -E '^(pytest|papermill|ipykernel|nbconvert|jax|jaxlib)==' requirements.txt)
	@$(VENV_MIN)/bin/python -c "import importlib.metadata as m; print('test-min resolved:', ', '.join(f'{d} {m.version(d)}' \
		for d in ['tensorflow','keras','keras-hub','numpy','pandas','scikit-learn','matplotlib','opencv-python-headless','tqdm','safetensors']))"
	PATH=$(VENV_MIN)/bin:$$PATH $(VENV_MIN)/bin/python -m pytest -q -m 'not slow' $(PYTEST_ARGS)
	PATH=$(VENV_MIN)/bin:$$PATH $(VENV_MIN)/bin/python -m pytest -q tests/test_notebooks.py -k '01_eda or 04_scratch' $(PYTEST_ARGS)

## Benchmarks: ratios measured in one run (not part of make test).
## Each benchmark's printed numbers are also kept in bench/results/<name>.txt (with the commit that made them).
bench: $(STAMP)
	@set -o pipefail; for b in $(sort $(wildcard bench/bench_*.py)); do name=$$(basename $$b .py); \
		echo "== $$b"; { echo "# $$b at commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git status --porcelain --untracked-files=no -- . ':!bench/results' 2>/dev/null | grep -q . && echo ' +changes'), $$(date -u +%F)"; \
		$(BIN)/python $$b; } | tee bench/results/$$name.txt.part && mv bench/results/$$name.txt.part bench/results/$$name.txt \
		|| { rm -f bench/results/$$name.txt.part; exit 1; }; done

## A fork's address into pyproject.toml, the badges and the notebooks' fetch cells: make publish REPOSITORY=https://github.com/<owner>/<name>
publish:
	$(PY) notebooks/publish.py "$(REPOSITORY)"

clean-outputs:
	rm -rf outputs/figures outputs/clean outputs/tiles outputs/runs outputs/submissions
