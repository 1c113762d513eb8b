# TickStock historical loader: developer entry points.
# Only Python 3.11+ and the package index are needed; PostgreSQL, Redis and the Massive API are
# embedded/simulated unless TICKSTOCK_POSTGRES_URL / TICKSTOCK_REDIS_URL point at real servers.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TSDB_SERVER := devtools/tsdb_server
NPM_STAMP := $(TSDB_SERVER)/node_modules/.installed
PYTEST_ARGS ?=
SIM_ARGS ?=
WORKERS ?= 2
CONCURRENCY ?= 6

.PHONY: help install lock lint format test test-fast test-cluster demo sim airflow cluster bench services-start services-stop clean

help:
	@echo "make install   create/update .venv and the test server's npm packages from the lock files (no-op when up to date)"
	@echo "make test      install + ruff + the whole pytest suite (embedded PostgreSQL/Redis, simulator)"
	@echo "make test-cluster  the long acceptance runs on make cluster (pytest -m cluster)"
	@echo "make demo      run the acceptance loads offline and print bar counts"
	@echo "make sim       run the offline Massive API simulator in the foreground (SIM_ARGS=...)"
	@echo "make airflow   run Airflow standalone on the embedded services"
	@echo "make cluster   run the deployment's components: CeleryExecutor, WORKERS=2 workers, PostgreSQL metadata"
	@echo "make bench     run the benchmarks and write docs/benchmarks.md"
	@echo "make lock      re-resolve requirements*.txt from requirements*.in"

install: $(STAMP) $(NPM_STAMP)

# The stamp depends on the lock files, so a second `make install` is a no-op until they change.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is required ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep -E '^uv==' requirements-dev.txt)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/python devtools/tickstock_dev/pathfile.py
	touch $(STAMP)

# The TimescaleDB test server's npm packages, exactly as locked (npm ci); the stamp follows the
# lock file, so later runs (and the tests) need no network.
$(NPM_STAMP): $(TSDB_SERVER)/package.json $(TSDB_SERVER)/package-lock.json
	@command -v npm >/dev/null || \
		{ echo "npm (Node.js 20+) is required for the TimescaleDB test server in $(TSDB_SERVER)"; exit 1; }
	cd $(TSDB_SERVER) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

lock: $(STAMP)
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements-dev.in -o requirements-dev.txt

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The long acceptance runs on the local cluster (500 symbols x 1 year on 2 Celery workers, ...).
test-cluster: $(STAMP)
	$(BIN)/pytest -m cluster $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m tickstock_dev.demo

sim: $(STAMP)
	$(BIN)/python -m massive_sim $(SIM_ARGS)

airflow: $(STAMP)
	$(BIN)/python -m tickstock_dev.airflow_local

cluster: $(STAMP)
	$(BIN)/python -m tickstock_dev.cluster --workers $(WORKERS) --concurrency $(CONCURRENCY)

bench: $(STAMP)
	$(BIN)/python -m tickstock_dev.bench

services-start: $(STAMP)
	$(BIN)/python -m tickstock_dev.services start

services-stop: $(STAMP)
	$(BIN)/python -m tickstock_dev.services stop

clean: services-stop
	rm -rf .state
