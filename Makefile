# Every target sets itself up: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test browser bench bench-deploy clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (genforge needs Python >= 3.11); set PYTHON=..."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are pinned as a pair; the pyproject only states ranges.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m genforge demo

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider

# The browser test (tests/deploy/test_browser.py) drives Debian's chromium through Playwright; nothing
# downloads a browser. Without apt-get (or root) the install is skipped and so is that one test.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -n "$${GENFORGE_CHROMIUM:-}" ] || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium (Debian package) for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	      || echo "warning: apt-get could not install chromium: the browser test will be skipped"; \
	  else \
	    echo "note: chromium is not installed and apt-get is unavailable or needs root: the browser test will be" \
	         "skipped (install chromium, or set GENFORGE_CHROMIUM=/path/to/chromium)"; \
	  fi; }

bench: $(STAMP)
	$(PY) bench/generation.py

bench-deploy: $(STAMP)
	$(PY) bench/deploy.py

clean:
	rm -rf $(VENV) runs demo_out
