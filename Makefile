# Quick start: `make demo` (the main job) and `make test` (the test suite). Each sets itself up from a fresh clone:
# a virtual environment in .venv with the package installed as a user would (pip install -e .[dev]), and the
# cifar10-jpeg images unpacked into .data/ when the shared archive is beside the checkout.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARCHIVE ?= ../shared/data/cifar10-jpeg.tar.gz
DATA := .data/cifar10-jpeg
PYTEST_ARGS ?=

.PHONY: install data browser demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps 'torchattacks==3.5.1'
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

test: install data browser
	ROBUSTGRID_TEST_DATA_ROOT=$$( [ -d $(DATA)/test ] && echo $(CURDIR)/$(DATA) ) \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install data
	$(BIN)/robustgrid bench $$( [ -d $(DATA)/test ] && echo --data-root $(DATA) )

clean:
	rm -rf $(VENV) .data robustgrid.db* ray_results .pytest_cache
