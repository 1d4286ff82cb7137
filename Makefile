# Two commands do all the set-up on a fresh Debian/Ubuntu machine:
#   make demo   virtual environment + requirements + data, then train and evaluate a model
#   make test   the same set-up, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: setup data demo test lint clean

setup: $(VENV)/.installed data

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

data:
	@sh scripts/install_data.sh

demo: setup
	$(PY) scripts/train.py --model vae --preset bernoulli --output $(RUN)

test: setup
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check hml_vae scripts tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
