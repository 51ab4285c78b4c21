# Two commands do all the set-up on a fresh machine:
#   make demo   the whole system on embedded defaults, with demo data
#   make test   the full test suite (what CI runs, through .ci/run)
# and, for the developer's quick loop, `make check` (lint, types, contracts, tests without servers).
#
# Python packages are installed from the lock (requirements/dev.txt: every package, exact versions
# and hashes), never from pyproject.toml's ranges; `make lock` updates it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check coverage install lint lock clean graphiql-assets console serving-env

install: $(VENV)/.installed graphiql-assets console

# GraphiQL's browser assets come from npm at build time and are served by the gateway itself.
graphiql-assets:
	@scripts/vendor-graphiql

# The operations console (/console): TypeScript built with npm from console/package-lock.json.
console:
	@scripts/build-console

# Everything from the lock, hashes checked, by uv (the lock's own, installed first by pip from
# requirements/bootstrap.txt: a fifth of pip's time, and no byte-compiling of what is never
# imported); then the project itself, built with the lock's setuptools (no build isolation:
# nothing unpinned is fetched); then `pip check`, which fails when pyproject.toml asks for
# something the lock does not hold (run `make lock`).
$(VENV)/.installed: pyproject.toml requirements/dev.txt requirements/bootstrap.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Lighthouse is locked for Python 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/bootstrap.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/pip check || { echo "the lock does not satisfy pyproject.toml: run make lock" >&2; exit 1; }
	@touch $@

# The lock: requirements/dev.txt (the gateway, its tests and tools) and requirements/gateway.txt
# (what a production gateway installs, the same versions). Run after changing a dependency in
# pyproject.toml, and monthly for security releases; commit both files with the test run they
# passed. --upgrade takes the newest versions pyproject.toml admits; without it (LOCK_UPGRADE=)
# only what changed is resolved.
LOCK_UPGRADE ?= --upgrade
lock: $(VENV)/.installed
	$(BIN)/uv pip compile --quiet pyproject.toml requirements/tools.in --extra dev \
		--generate-hashes --python-version 3.11 $(LOCK_UPGRADE) \
		--custom-compile-command 'make lock' -o requirements/dev.txt
	$(BIN)/uv pip compile --quiet pyproject.toml --generate-hashes --python-version 3.11 \
		--constraint requirements/dev.txt --custom-compile-command 'make lock' \
		-o requirements/gateway.txt
	$(BIN)/uv pip compile --quiet requirements/bootstrap.in --generate-hashes --python-version 3.11 \
		--constraint requirements/dev.txt --custom-compile-command 'make lock' \
		-o requirements/bootstrap.txt

# The serving tier's CPU environment (Ray Serve LLM + vLLM, about 7 GB), built once per machine
# outside the checkout and shared by every clone; its path is printed last and written to
# .lighthouse/serving-env. Fast (an import check) when it exists.
serving-env:
	@PYTHON=$(PYTHON) scripts/serving-env

demo: install serving-env
	$(BIN)/lighthouse demo

test: install serving-env
	scripts/run-tests

# The developer's quick loop (a minute or two): lint, types, import contracts and the tests that
# need no server, for the gateway and the serving tier. CI runs `make test`.
check: install serving-env
	scripts/run-tests --quick

# Line and branch coverage of api/ over every test on the embedded server (the gateway processes
# included): slower than `make test`'s first pass, which traces only the SQL modules.
coverage: install serving-env
	rm -rf build/coverage-api && mkdir -p build/coverage-api
	$(BIN)/coverage run -m pytest -q -n auto --dist loadgroup
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report --skip-covered

lint: install
	$(BIN)/ruff check api tests bench migrations
	$(BIN)/ruff format --check api tests bench migrations
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lighthouse .pytest_cache .mypy_cache .ruff_cache
