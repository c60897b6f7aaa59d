# The two commands of the README: `make run` (set up, then start the app) and
# `make test` (set up, then run the whole test suite). Setup is incremental:
# the virtual environment is rebuilt only when requirements.txt changes.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: run test test-fast setup browser lint bench demo-data

$(STAMP): requirements.txt constraints.txt
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the CPU build on disk; the constraints keep it there.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@command -v /usr/bin/chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; browser tests will be skipped"; }

run: setup
	# app.py starts the server itself (see _launch in app.py)
	$(PY) app.py

test: setup browser
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not e2e"

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/bench_reweight.py

demo-data: setup
	$(PY) -m hyre_engine demo-data
