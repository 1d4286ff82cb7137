# Two commands do all the set-up on a fresh Debian/Ubuntu machine:
#   make demo   virtual environment + requirements + data, then train and evaluate a model
#   make test   the same set-up, then the test suite
#   make bench        every benchmarks/results/ file regenerated from this code (hours)
#   make bench-quick  every benchmark at a tiny size into a temporary directory (minutes)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: setup data demo test lint clean bench bench-quick

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

# The PyTorch reference of benchmarks/throughput.py is in benchmarks/requirements.txt.
bench: setup
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) benchmarks/run_all.py --full
	$(PY) benchmarks/readme_tables.py

bench-quick: setup
	$(PY) benchmarks/run_all.py --quick

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check hml_vae scripts tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
