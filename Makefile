# The commands the README shows. Each works on a fresh clone with nothing but Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint typecheck docs install clean dist

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check $(wildcard src tests bench examples)
	$(VENV)/bin/ruff check $(wildcard src tests bench examples)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/perdure demo

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[all,dev,bench]"
	$(PY) bench/run.py

# The wheel and the sdist, in dist/: `pip install "perdure[openai] @ file://$(CURDIR)/dist/perdure-<version>-py3-none-any.whl"`
# installs this perdure into another project (tests/install builds and installs one the same way).
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
