# rs_detectron2: `make test` and `make demo` work on a fresh clone (they install into .venv first).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install lint format test demo bench bench-loss clean

install:
	@VENV=$(VENV) bash scripts/install.sh

# Style (ruff, configured in pyproject.toml: line length 100) is checked before the tests run.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PYTHON) -m pytest $(PYTEST_ARGS)

demo: install
	$(PYTHON) scripts/demo.py

bench-loss: install
	$(PYTHON) benchmarks/bench_rank_sort.py --markdown

bench: bench-loss
	$(PYTHON) benchmarks/bench_train_step.py

clean:
	rm -rf output .pytest_cache build dist
