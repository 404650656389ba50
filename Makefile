# One command per task, the same for people and CI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml devtools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./devtools
	touch $(STAMP)

install: $(STAMP)  ## Create the virtualenv: the connector and its development tools (devtools/)

kafka-jars: $(STAMP)  ## Download and cache Apache Kafka's jars (needs Java 17 and Maven)
	$(BIN)/outgrow-braze local-kafka --prepare-only

kustomize: $(STAMP)  ## Build and cache the pinned kustomize the manifest tests render with (needs Go)
	$(BIN)/python -m tests.deploy_support

run: $(STAMP)  ## Start a local broker, the Braze sandbox, the receiver and the worker (development)
	$(BIN)/python -m outgrow_braze_dev.run

test: $(STAMP) kafka-jars kustomize  ## Run the whole suite against a real Kafka broker
	$(BIN)/pytest

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check connector devtools tests
	$(BIN)/ruff format --check connector devtools tests
	$(BIN)/mypy

bench: $(STAMP) kafka-jars  ## Benchmark the receiver against the local broker (others: outgrow-braze bench -h)
	$(BIN)/outgrow-braze bench receiver

chaos: $(STAMP) kafka-jars  ## Fault test: 3 brokers, workers stopped and killed, outages; nothing lost
	$(BIN)/outgrow-braze chaos

.PHONY: help install kafka-jars kustomize run test lint bench chaos
