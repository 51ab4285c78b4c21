# Two commands do all the set-up on a fresh machine:
#   make demo   the whole system on embedded defaults, with demo data
#   make test   the full test suite (what CI runs, through .ci/run)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint clean graphiql-assets serving-env

install: $(VENV)/.installed graphiql-assets

# GraphiQL's browser assets come from npm at build time and are served by the gateway itself.
graphiql-assets:
	@scripts/vendor-graphiql

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Lighthouse needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The serving tier's CPU environment (Ray Serve LLM + vLLM, about 7 GB), built once per machine
# outside the checkout and shared by every clone; its path is printed last and written to
# .lighthouse/serving-env. Fast (an import check) when it exists.
serving-env:
	@PYTHON=$(PYTHON) scripts/serving-env

demo: install serving-env
	$(BIN)/lighthouse demo

test: install serving-env
	scripts/run-tests

lint: install
	$(BIN)/ruff check api tests bench migrations
	$(BIN)/ruff format --check api tests bench migrations
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lighthouse .pytest_cache .mypy_cache .ruff_cache
