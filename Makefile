# rssn: two commands matter.
#   make demo   sample data -> build-bg -> prepare -> compose -> inspect -> gap -> train -> eval
#   make test   the test suite
# Both create .venv and install the pinned dependencies on first use.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.rssn-installed
DEMO_OUT ?= demo-out
WORKERS  ?= 2
export YOLO_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	YOLO_CONFIG_DIR=$(abspath $(DEMO_OUT))/.yolo bash scripts/demo.sh $(DEMO_OUT) $(WORKERS)

test: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=900 tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=600 -m "not slow" tests

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
