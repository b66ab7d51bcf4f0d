# The two commands a newcomer runs: `make demo` and `make test`. Both set everything up.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
             command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
             && { command -v $$p; break; }; done)
SHAHR := $(VENV)/bin/shahr
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-deps setup assets db lint bench-load clean help

help:
	@echo "make demo   set up, load the demo city and serve it on http://127.0.0.1:8000"
	@echo "make test   set up, then run the whole test suite"
	@echo "make lint   ruff"
	@echo "make assets the map libraries and font from npm into api/static/vendor (make setup runs it)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Shahr needs Python >= 3.11 (python3.11 or newer)"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	   && apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Browser libraries served by Shahr itself (no CDN): `npm ci` from the committed lock, then
# assets/vendor.sh copies their dist files into api/static/vendor/ (gitignored). Rebuilt when
# the lock or the script changes. npm comes from apt when missing and we are root.
VENDOR_STAMP := api/static/vendor/.stamp
$(VENDOR_STAMP): assets/package.json assets/package-lock.json assets/vendor.sh
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	   && { apt-get install -y -q npm >/dev/null 2>&1 || { apt-get update -q >/dev/null \
	        && apt-get install -y -q npm >/dev/null; }; }; } \
	   || { echo "Shahr needs npm (Node.js) to install its map libraries"; exit 1; }
	cd assets && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	sh assets/vendor.sh assets/node_modules api/static/vendor
	@touch $(VENDOR_STAMP)

assets: $(VENDOR_STAMP)

setup: $(STAMP) $(VENDOR_STAMP)

db: setup
	$(SHAHR) db upgrade

demo: db
	$(SHAHR) demo generate
	$(SHAHR) etl run --all
	$(SHAHR) serve

# Real clients the tests drive: GDAL's OAPIF driver (gdal-bin) and headless Chromium
# (Debian's chromium, driven by Playwright; never a downloaded browser). Installed when
# missing and we are root on Debian/Ubuntu.
APT_TEST_DEPS := $(if $(shell command -v ogrinfo),,gdal-bin) $(if $(wildcard /usr/bin/chromium),,chromium)
test-deps:
	@if [ -n "$(strip $(APT_TEST_DEPS))" ]; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	     apt-get install -y -q $(APT_TEST_DEPS) >/dev/null 2>&1 || { apt-get update -q >/dev/null \
	       && apt-get install -y -q $(APT_TEST_DEPS) >/dev/null; }; \
	   else echo "note: install $(APT_TEST_DEPS) for the client and browser tests"; fi; fi

test: db test-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench-load: db
	$(VENV)/bin/python bench/bench_load.py

clean:
	rm -rf $(VENV) .data .pytest_cache test-output assets/node_modules api/static/vendor
