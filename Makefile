# Frontdesk: `make run` starts the demo, `make test` installs and runs every check.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt whenever the dependencies in setup.cfg change.
STAMP := $(VENV)/.installed

.PHONY: run token test lint typecheck pytest check-config clean bench bench-quick image image-local

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,otel]'
	touch $(STAMP)

## run: the demo services and the gateway (gunicorn, gevent workers) on 127.0.0.1:8080; Ctrl-C stops both
run: $(STAMP)
	@trap 'kill $$demo 2>/dev/null; wait $$demo 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python -m examples.demo & demo=$$!; \
	GATEWAY_ENV=$${GATEWAY_ENV:-development} $(BIN)/gunicorn -c gunicorn.conf.py

## token: a demo bearer token from the demo IdP that `make run` starts, e.g. make token SCOPE="orders:read users:read"
token: $(STAMP)
	@$(BIN)/python -m examples.demo.token $(foreach scope,$(SCOPE),--scope $(scope))

## test: lint, type check, then the whole suite (unit and end-to-end)
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/flake8 app blueprints settings tests examples bench deploy wsgi.py worker.py gunicorn.conf.py
	$(BIN)/hadolint deploy/Containerfile
	$(BIN)/lint-imports --no-cache  # the layers' contracts in setup.cfg ([importlinter])

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## check-config: validate settings and GATEWAY_CONFIG without serving
check-config: $(STAMP)
	$(BIN)/python -m app check

## bench: Frontdesk against reference servers (needs wrk; nginx when installed); writes docs/benchmark.md/.json
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(BENCH_NOTE),--note "$(BENCH_NOTE)")

## bench-quick: the same harness, one second per contender; the report goes to a temp directory
bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

## image: the gateway's image from deploy/Containerfile with buildah (BASE=... picks the base image; IMAGE=... the tag)
image:
	$(PYTHON) deploy/image.py build $(if $(BASE),--base $(BASE))

## image-local: the same on a Debian bookworm base made here by debootstrap (cached), for machines without a registry
image-local:
	$(PYTHON) deploy/image.py build --local-base

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache
