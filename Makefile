# mailfort — two commands: `make run` (a node on the embedded store) and `make test` (everything).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the tests drive as real clients (swaks needs Net::SSLeay for TLS; chromium and
# chromium-driver load the status page, espeak-ng speaks its phone announcement, faketime steps
# one node's wall clock, nftables cuts a chaos node off from the database or the remote MX, pebble
# is Let's Encrypt's test ACME CA that tests/pebble.py starts on loopback)
TEST_PACKAGES := swaks libnet-ssleay-perl isync fetchmail chromium chromium-driver espeak-ng faketime \
  nftables pebble

# Where the serial pass's tests live (tests/conftest.py): it collects only these.
SERIAL_DIRS := tests/adversarial tests/chaos tests/integration

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "mailfort needs Python >= 3.11 (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	@touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/mailfort init --demo
	exec $(BIN)/mailfort serve

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

test: $(VENV)/.test-installed
	scripts/ensure-debian-packages $(TEST_PACKAGES)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	@# A private PostgreSQL (installed when missing) for the conformance suite's second engine.
	@# Two passes: the bulk on two workers, then the load-sensitive tests alone (tests/conftest.py);
	@# exit 5 of the second is "none selected" (PYTEST_ARGS named other tests); without
	@# PYTEST_ARGS it collects only SERIAL_DIRS (collecting all ~2,900 tests costs it 15-40 s).
	MAILFORT_TEST_PG_DSN=$${MAILFORT_TEST_PG_DSN:-$$(scripts/ensure-postgres)} && \
	  export MAILFORT_TEST_PG_DSN && \
	  $(BIN)/pytest -q -p no:cacheprovider -n 2 -m "not serial" $(PYTEST_ARGS) && \
	  { $(BIN)/pytest -q -p no:cacheprovider -m serial $(or $(PYTEST_ARGS),$(SERIAL_DIRS)) || \
	    [ $$? -eq 5 ]; }

unit: $(VENV)/.test-installed
	MAILFORT_TEST_PG_DSN=$${MAILFORT_TEST_PG_DSN:-$$(scripts/ensure-postgres)} && \
	  export MAILFORT_TEST_PG_DSN && $(BIN)/pytest -q tests/unit tests/store

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/smtp_ingest.py

clean:
	rm -rf $(VENV) var build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
