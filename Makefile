# Frontdesk: `make run` starts the demo, `make test` installs and runs every check.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt whenever the dependencies in setup.cfg change.
STAMP := $(VENV)/.installed

.PHONY: run token test test-matrix lint typecheck pytest check-config clean bench bench-quick image image-local

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

## test-matrix: the unit suite (not the e2e ones) on Python 3.12 and 3.13 from pyenv, each in its own venv
## (.venv-3.12, .venv-3.13); `make test` is the full suite on 3.11. Under CI=true a missing interpreter fails.
MATRIX := 3.12.1 3.13.0

test-matrix: $(foreach version,$(MATRIX),test-python-$(version))

test-python-%:
	@root=$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}"); \
	python=$$root/versions/$*/bin/python3; \
	if [ ! -x "$$python" ]; then \
		if [ "$${CI:-}" = true ]; then echo "test-matrix: Python $* is missing ($$python)" >&2; exit 1; fi; \
		echo "test-matrix: Python $* is not installed ($$python): skipped"; exit 0; \
	fi; \
	venv=.venv-$(basename $*); \
	if [ ! -f $$venv/.installed ] || [ setup.cfg -nt $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
		"$$python" -m venv $$venv && $$venv/bin/pip install --quiet --upgrade pip && \
		$$venv/bin/pip install --quiet -e '.[test,otel]' && touch $$venv/.installed || exit 1; \
	fi; \
	echo "test-matrix: Python $* ($$venv)"; \
	$$venv/bin/python -m pytest -m "not e2e" -p no:cacheprovider $(PYTEST_ARGS)

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

## bench: Frontdesk against reference servers (needs wrk; nginx when installed); writes docs/benchmark.md/.json.
## BENCH_BASELINE=<commit> also serves that commit's gateway in the same rounds (before/after figures).
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(BENCH_NOTE),--note "$(BENCH_NOTE)") $(if $(BENCH_BASELINE),--baseline "$(BENCH_BASELINE)")

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
	rm -rf $(VENV) .venv-3.* *.egg-info .pytest_cache .mypy_cache .import_linter_cache
