# Every target sets itself up on a fresh machine: .venv from requirements.lock, Mermaid from
# package-lock.json. Needs python3 (3.11+), make, node and npm.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Mermaid's ES-module build: the site loads only the parts a sequence diagram needs (about
# 0.9 MB instead of 3.5 MB), through docs/assets/js/mermaid-lazy.js.
MERMAID_ESM := docs/assets/js/mermaid
# Material prints an end-of-life banner at every build; the pins already keep mkdocs < 2.
export NO_MKDOCS_2_WARNING := 1

AUDIT  := tools/audit

.PHONY: help setup serve build lint test test-fast audit lock clean

help:
	@echo "make serve  - set up, build strictly and serve the site at http://127.0.0.1:8000"
	@echo "make test   - set up and run every test: doc pages (Sybil), tests/, strict build"
	@echo "make build  - build the static site into site/ (mkdocs build --strict)"
	@echo "make lint   - ruff and mypy over snippets/ (part of make test)"
	@echo "make audit  - Lighthouse on every page (desktop, mobile), and make build/test times"
	@echo "make test-fast - every test but the browser tests (no Chromium needed)"

setup: $(VENV)/.installed $(MERMAID_ESM)/mermaid.esm.min.mjs

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(MERMAID_ESM)/mermaid.esm.min.mjs: node_modules/.package-lock.json
	rm -rf $(MERMAID_ESM) && mkdir -p $(MERMAID_ESM)/chunks
	cp -r node_modules/mermaid/dist/chunks/mermaid.esm.min $(MERMAID_ESM)/chunks/
	rm -f $(MERMAID_ESM)/chunks/mermaid.esm.min/*.map
	cp node_modules/mermaid/dist/mermaid.esm.min.mjs $@

serve: setup
	@echo "Serving the site at http://127.0.0.1:8000 (Ctrl+C to stop)"
	@# site_url's path (/cache-invalidation/ on GitHub Pages) would move the site off the root.
	SITE_URL=http://127.0.0.1:8000/ $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

build: setup
	$(BIN)/mkdocs build --strict

# The code the pages show is linted at the page's width (88) and type-checked.
lint: setup
	$(BIN)/ruff check snippets tests conftest.py hooks
	$(BIN)/mypy

# pytest runs the browser tests too (tests/test_site.py: Chromium at /usr/bin/chromium);
# outside CI they skip, saying why, when Chromium is missing.
# The site is built once, strictly, into site/; the browser tests use that build
# (SITE_DIR). pytest-xdist runs the tests on every core, a file per worker: the
# examples of a page share one namespace, in order.
test: setup lint
	$(BIN)/mkdocs build --strict --quiet
	SITE_DIR=site $(BIN)/pytest -n auto --dist loadfile
	@# The built site must name no CDN: it requests nothing from another host.
	@! grep -rlE "unpkg|jsdelivr|cdnjs|googleapis" site/ || { echo "site/ names a CDN (see files above)"; exit 1; }
	@echo "make test: all tests passed and the site builds strictly"

test-fast: setup
	$(BIN)/pytest -n auto --dist loadfile -m "not browser"

# Lighthouse lives in its own package.json, so `make serve` and `make test` never install it.
$(AUDIT)/node_modules/.package-lock.json: $(AUDIT)/package.json $(AUDIT)/package-lock.json
	cd $(AUDIT) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

audit: setup $(AUDIT)/node_modules/.package-lock.json
	CHROME_PATH=$${CHROME_PATH:-/usr/bin/chromium} $(BIN)/python $(AUDIT)/audit.py

lock:
	rm -rf /tmp/cache-invalidation-lock && $(PYTHON) -m venv /tmp/cache-invalidation-lock
	/tmp/cache-invalidation-lock/bin/pip install --quiet -e '.[docs,test,browser]'
	{ echo "# Exact versions the site is built and tested with (pip freeze of a fresh .venv)."; \
	  echo "# Regenerate: make lock"; \
	  /tmp/cache-invalidation-lock/bin/pip freeze --all --exclude-editable | grep -v -e "^-e" -e "^pip=="; } > requirements.lock

clean:
	rm -rf $(VENV) site node_modules $(MERMAID_ESM) .pytest_cache .cache $(AUDIT)/node_modules
