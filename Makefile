# Tollgate developer tasks. `make help` lists them.
# PYTHON makes the venv (Python 3.11+); everything else runs in the venv.
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON = $(VENV)/bin/python
COMPOSE ?= docker compose
PYTEST_FLAGS ?= -q -ra --durations=10
KONG_PROXY_PORT ?= 8000
KONG_ADMIN_PORT ?= 8001
UP_TIMEOUT ?= 180
# extra `docker compose` flags of `make up` (up-observability adds the observability profile)
UP_FLAGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv install test test-e2e validate up up-observability down logs bench lint

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

venv: ## create .venv with Tollgate and its test dependencies (again only when pyproject.toml changed)
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/venv.sh

install: ## install Tollgate editable with its test dependencies into the current Python instead
	$(PYTHON) -m pip install -e '.[test,ner,local-embeddings-int8]'

# The venv's bin/ first on PATH, as if activated: tests find its console scripts (kong-python-pluginserver).
test: venv ## set up .venv, check the decK files, run every test under tests/ (real-Kong tests skip without Kong)
	$(VENV_PYTHON) -m tollgate validate declarative/*.yml
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV_PYTHON) -m pytest $(PYTEST_FLAGS) tests

test-e2e: venv ## only the deployment and real-Kong tests (a Docker engine or a kong binary for the latter)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV_PYTHON) -m pytest $(PYTEST_FLAGS) tests/e2e

validate: venv ## check every Tollgate plugin config in the decK files (tollgate validate declarative/*.yml)
	$(VENV_PYTHON) -m tollgate validate declarative/*.yml

up: ## build and start Kong + Tollgate, Redis and the mock LLM, then wait until Kong answers
	@COMPOSE="$(COMPOSE)" scripts/check-compose.sh
	KONG_PROXY_PORT=$(KONG_PROXY_PORT) KONG_ADMIN_PORT=$(KONG_ADMIN_PORT) $(COMPOSE) $(UP_FLAGS) up -d --build
	@echo "waiting for Kong on localhost:$(KONG_ADMIN_PORT) (at most $(UP_TIMEOUT)s)..."
	@i=0; until curl -fsS -o /dev/null http://localhost:$(KONG_ADMIN_PORT)/status; do \
	  i=$$((i+1)); if [ $$i -ge $(UP_TIMEOUT) ]; then \
	    echo "Kong did not answer; last logs:"; $(COMPOSE) logs --tail=50 kong; exit 1; fi; \
	  sleep 1; done
	@echo "Kong is up: proxy http://localhost:$(KONG_PROXY_PORT), Admin API http://localhost:$(KONG_ADMIN_PORT)"

up-observability: ## `make up` plus Prometheus (localhost:9090) and Grafana (localhost:3000) with Tollgate's dashboard
	@$(MAKE) --no-print-directory up UP_FLAGS="--profile observability"
	@echo "Prometheus http://localhost:$${PROMETHEUS_PORT:-9090}, Grafana http://localhost:$${GRAFANA_PORT:-3000} (dashboard \"Tollgate\")"

down: ## stop the stack and remove its containers and volumes
	@COMPOSE="$(COMPOSE)" scripts/check-compose.sh
	$(COMPOSE) --profile observability down --volumes --remove-orphans

logs: ## follow the stack's logs
	$(COMPOSE) logs -f

bench: venv ## run the benchmark (bench/run.py) in .venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV_PYTHON) bench/run.py

lint: ## byte-compile everything and check the shell scripts (shellcheck if installed)
	$(PYTHON) -m compileall -q plugins tests
	for f in kong/entrypoint.sh .ci/run scripts/*.sh; do bash -n "$$f" || exit 1; done
	@if command -v shellcheck >/dev/null; then shellcheck kong/entrypoint.sh .ci/run scripts/*.sh; fi
