# Set-up and everyday commands. Each target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test index bench lint clean-data

serve: $(VENV)/.installed
	$(BIN)/plansearch serve

test: $(VENV)/.installed-test
	scripts/install-browser
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

index: $(VENV)/.installed
	$(BIN)/plansearch index

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

lint: $(VENV)/.installed-test
	$(BIN)/python -m ruff check .

# torch first, pinned to the local CPU wheel, so that nothing pulls the CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean-data:
	rm -rf data/index
