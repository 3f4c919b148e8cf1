# Two commands do everything on a fresh machine: `make notebooks` and `make test`.
# Both create .venv and install the pinned requirements when needed.
PY ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= smoke
# the data folder as the notebooks see it (they run in notebooks/): relative, so no machine path is rendered
DATA_DIR ?= ../data
SEED ?= 42
PYTEST_ARGS ?=
SHELL := /bin/bash
UV_VERSION := 0.13.9
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONHASHSEED ?= 0

NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))

.PHONY: notebooks test bench venv clean-outputs

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing pinned requirements into .venv (first run only; uv, else pip)"
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) 2>&1 | grep -v "^WARNING: Location" || true
	@if [ -x $(BIN)/uv ] && $(BIN)/uv pip install -q --python $(BIN)/python -r requirements.txt \
		&& $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . ; then :; else \
		echo "uv unavailable or failed: installing with pip"; \
		$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true; \
		$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true; \
	fi
	@$(BIN)/python -c "import tensorflow, keras, keras_hub, cv2, sklearn, papermill, jax, safetensors, anndl" \
		|| { echo "error: .venv is incomplete (see the installer's output above)"; exit 1; }
	@touch $(STAMP)

## Run every notebook top-to-bottom on data/ (the real challenge folder, or the synthetic default)
## and keep the rendered copies in notebooks/. PROFILE=full for the report's settings (GPU).
notebooks: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb (profile $(PROFILE), data $(DATA_DIR))"; start=$$(date +%s); \
		$(BIN)/papermill "$$nb" "$$nb" --cwd notebooks -k python3 --no-progress-bar \
			-p DATA_DIR "$(DATA_DIR)" -p PROFILE "$(PROFILE)" -p SEED $(SEED) || exit 1; \
		echo "== $$nb done in $$(( $$(date +%s) - start )) s"; \
	done

## Unit tests and a smoke run of every notebook on a tiny synthetic set.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 $(PYTEST_ARGS)

## Benchmarks: ratios measured in one run (not part of make test).
## Each benchmark's printed numbers are also kept in bench/results/<name>.txt (with the commit that made them).
bench: $(STAMP)
	@set -o pipefail; for b in $(sort $(wildcard bench/bench_*.py)); do name=$$(basename $$b .py); \
		echo "== $$b"; { echo "# $$b at commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git status --porcelain --untracked-files=no -- . ':!bench/results' 2>/dev/null | grep -q . && echo ' +changes'), $$(date -u +%F)"; \
		$(BIN)/python $$b; } | tee bench/results/$$name.txt.part && mv bench/results/$$name.txt.part bench/results/$$name.txt \
		|| { rm -f bench/results/$$name.txt.part; exit 1; }; done

clean-outputs:
	rm -rf outputs/figures outputs/clean outputs/tiles outputs/runs outputs/submissions
