# Quick start: `make demo` (the main job) and `make test` (the test suite). Each sets itself up from a fresh clone:
# a virtual environment in .venv with the locked versions (requirements.lock, made by `make lock` with pip-tools
# from pyproject.toml's ranges) and the package installed editable, and the cifar10-jpeg images unpacked into .data/
# when the shared archive is beside the checkout.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARCHIVE ?= ../shared/data/cifar10-jpeg.tar.gz
DATA := .data/cifar10-jpeg
PYTEST_ARGS ?=
# the lowest optuna pyproject.toml allows: the searcher tests run on it too
OPTUNA_MIN := 4.0.0
LOCK_FLAGS := -q -c lock-constraints.txt --extra dev --extra postgres --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links

.PHONY: install lock data browser demo test bench clean

install: $(VENV)/.installed

# The lock holds every package with its exact version (Linux x86_64, Python 3.11, as CI); the project itself goes
# in editable without resolving again. torchattacks (a reference in the attack tests) pins an old requests, so it
# goes in without its dependencies.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip install -q --no-deps 'torchattacks==3.5.1'
	touch $@

# Refresh the lock within pyproject.toml's ranges (newest allowed versions), then run `make test`.
lock:
	test -x $(BIN)/pip-compile || $(MAKE) install
	$(BIN)/pip-compile $(LOCK_FLAGS) --upgrade --output-file requirements.lock pyproject.toml

$(VENV)/optuna-min/.installed: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps --target $(VENV)/optuna-min 'optuna==$(OPTUNA_MIN)'
	touch $@

data:
	@if [ -d $(DATA)/test ]; then :; \
	elif [ -f $(ARCHIVE) ]; then echo "unpacking $(ARCHIVE) -> $(DATA)"; mkdir -p $(DATA).tmp && \
	  tar xzf $(ARCHIVE) -C $(DATA).tmp && mv $(DATA).tmp $(DATA); \
	else echo "no $(ARCHIVE): tests on real images are skipped; the demo downloads CIFAR-10"; fi

# Debian's chromium for the page test (tests/service/test_pages.py, marker `browser`), socat and iproute2 for the
# two-namespace Ray cluster (tests/cluster, tests/faults, marker `cluster`); each test is skipped, saying why, without.
browser:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v socat >/dev/null 2>&1 || missing="$$missing socat"; command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	  [ -z "$$missing" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } >/dev/null 2>&1 \
	  || echo "could not install$$missing: the tests that need them are skipped"

demo: install data
	$(BIN)/robustgrid demo $$( [ -d $(DATA)/test ] && echo --data-root $(DATA) )

test: install data browser $(VENV)/optuna-min/.installed
	ROBUSTGRID_TEST_DATA_ROOT=$$( [ -d $(DATA)/test ] && echo $(CURDIR)/$(DATA) ) \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)
	ROBUSTGRID_EXPECT_OPTUNA=$(OPTUNA_MIN) PYTHONPATH=$(VENV)/optuna-min \
	  $(BIN)/python -m pytest -q tests/workers/test_tune_search.py

bench: install data
	$(BIN)/robustgrid bench $$( [ -d $(DATA)/test ] && echo --data-root $(DATA) )

clean:
	rm -rf $(VENV) .data robustgrid.db* ray_results .pytest_cache
