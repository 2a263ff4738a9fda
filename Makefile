# The two commands a new user needs: `make run` and `make test`.
# Everything installs into .venv from pyproject.toml, pinned by constraints.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
COUNT  ?= 1
# pytest-xdist workers for `make pytest`: one per core and one more, since part of a test's
# time is spent waiting on the servers and processes it starts. On 2 cores 3 workers were
# the fastest each time they were compared (2, 3 and 4 workers: 124-133, 101-112 and 122 s;
# later, one run each: 115, 110 and 115 s). 0 runs the suite in one process
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
SAMPLE ?= $(or $(DEALS_DATA_DIR),.data)/sample.csv

.DEFAULT_GOAL := help
.PHONY: help install run serve sample test lint typecheck pytest migrate rollback migration \
        migrate-status db-start db-stop db-url lock bench bench-load image-check rules-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the service with its dev tools

run: install ## embedded PostgreSQL + migrations + sample data, then serve on 127.0.0.1:8000
	$(BIN)/deals migrate apply
	@$(MAKE) --no-print-directory sample
	$(BIN)/deals serve

sample: install ## load a generated 50,000-row sample (seed 1) if the deals table is empty
	@mkdir -p $(dir $(SAMPLE))
	@test -f $(SAMPLE) || $(BIN)/deals generate --rows 50000 --seed 1 -o $(SAMPLE)
	$(BIN)/deals load --if-empty $(SAMPLE)

serve: install ## serve without migrating (DATABASE_URL or the embedded server)
	$(BIN)/deals serve

test: install ## ruff, mypy --strict and the whole pytest suite (lint and mypy beside pytest)
	@$(MAKE) --no-print-directory --jobs=3 --output-sync=line lint typecheck pytest

lint: install ## ruff, ruff format --check, the import layers (lint-imports), squawk on the migrations, promtool on the alert rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/squawk migrations/*.sql
	@if command -v promtool >/dev/null; then \
	    echo "promtool check rules + test rules (ops/prometheus)"; \
	    promtool check rules ops/prometheus/alerts.yml && promtool test rules ops/prometheus/alerts.test.yml; \
	else \
	    echo "promtool not found: alert rules not checked (make rules-check installs it)"; \
	fi

typecheck: install ## mypy --strict
	$(BIN)/mypy

# The suite starts about 80 Python processes (deals serve, the CLI, the wheel's): bytecode
# is written even where the environment says not to (PYTHONDONTWRITEBYTECODE), so that they
# load the service compiled once instead of compiling it each.
pytest: install ## the test suite against a real PostgreSQL
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

migrate: install ## apply every pending migration
	$(BIN)/deals migrate apply

migrate-status: install ## list applied and pending migrations
	$(BIN)/deals migrate status

rollback: install ## roll back the newest COUNT migrations (default 1)
	$(BIN)/deals migrate rollback --count $(COUNT)

migration: install ## create the next migration: make migration NAME=add_something
	@test -n "$(NAME)" || (echo "usage: make migration NAME=what_it_does" && exit 2)
	$(BIN)/deals migrate new $(NAME)

db-start: install ## start the embedded PostgreSQL (data in .data/)
	$(BIN)/deals db start

db-stop: install ## stop the embedded PostgreSQL
	$(BIN)/deals db stop

db-url: install ## print the database URL
	$(BIN)/deals db url

bench-load: install ## deals load vs a plain psql \copy (the floor), 50k and 1M rows; see bench/bench_load.py
	$(BIN)/python -m bench.bench_load $(ARGS)

image-check: install ## build the image with podman (no engine or registry needed; root) and run it on API_PORT 8765
	bash ops/image-check.sh

rules-check: ## promtool check + unit-test ops/prometheus/alerts.yml (installs Debian's prometheus package when promtool is missing; root)
	bash ops/rules-check.sh

lock: ## re-pin constraints.txt from a fresh resolve of pyproject.toml
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable > constraints.txt
	rm -rf .lock-venv

clean: ## remove .venv and caches (keeps .data/)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
