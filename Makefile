# kdbench: `make demo` runs the main job on the embedded hdtf-mini sample, `make test` runs the test suite.
# Both create the virtual environment first (.venv) if it is missing or pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= demo_out

.PHONY: demo test lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[all]"
	# test-only reference tools; scenedetect<0.7 brings opencv-contrib-python, installed last on purpose
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	OUT=$(OUT) PY=$(PY) bash scripts/demo.sh

test: $(VENV)/.installed
	$(PY) -m pytest -q --durations=15

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check kdbench baselines metrics reports tests benchmarks

bench: $(VENV)/.installed
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
