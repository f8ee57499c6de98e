# The two set-up commands (see README.md):
#   make demo   - the whole contact centre on one machine (simulated PBX, SQLite)
#   make test   - the full test suite (starts Redis and PostgreSQL on loopback if needed)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cti demo

test: $(STAMP)
	bash scripts/services.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in bench/*.py; do [ $$b = bench/soak.py ] || $(BIN)/python $$b || exit 1; done

soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
