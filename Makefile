# harlib developer commands. `make setup` then `make test` is what CI runs (.ci/run).
PY ?= .venv/bin/python
BIN := $(dir $(PY))

.PHONY: setup browser lab test check nbtest pytest export clean docs quickstart

## everything harlib needs, inside .venv/ only: nothing outside the project changes
setup:
	python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q -e ".[dev]"

## optional, changes the system: Chromium (Debian/Ubuntu, as root) for the docs site's browser test
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make browser: run it as root on Debian/Ubuntu, or install Chromium yourself"; exit 1; }

## JupyterLab on the workbook (root too: Jupyter refuses root unless told --allow-root)
lab:
	$(BIN)jupyter lab --notebook-dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

## the test command: sync/clean checks, every notebook, the pytest suite
test: check nbtest pytest

check:
	@$(PY) tests/check_sync.py

nbtest:
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)nbdev_test --n_workers 2 --do_print

pytest:
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

export:
	$(BIN)nbdev_export

clean:
	$(BIN)nbdev_clean
