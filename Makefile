# The two commands a newcomer needs (see README.md):
#   make demo   runs the storeflow demo on the embedded default
#   make test   lint, type-check and the whole test suite
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bootstrap lint

bootstrap:
	./scripts/bootstrap.sh

# No telemetry from the machine's Prefect (the network is closed anyway).
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

demo:
	./scripts/bootstrap.sh no-services
	$(BIN)/storeflow demo

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
