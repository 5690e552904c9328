# The two commands a newcomer needs: `make run` (the main job, end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian's packages the suite needs: redis-server (tests start their own on a free port) and
# Chromium (the before/after page is checked in a headless browser). Installed when missing.
SYSTEM_TOOLS := /usr/bin/redis-server /usr/bin/chromium

.PHONY: install system lint test run bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

/usr/bin/redis-server:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server

/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

install: $(STAMP)

system: $(SYSTEM_TOOLS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: system lint
	$(BIN)/pytest

run: install /usr/bin/redis-server
	$(BIN)/python -m producers.demo $(ARGS)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
