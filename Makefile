# SlideWatch — set-up, tests, demo, benchmarks.
# Every target installs what it needs first, idempotently, on a fresh Debian 12 machine.

SHELL := /bin/bash
SYS_PYTHON := /usr/bin/python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
BUILD := $(CURDIR)/.build
PLUGINS := $(BUILD)/plugins
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
QGIS_PROFILE := $(HOME)/.local/share/QGIS/QGIS3/profiles/default
APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal python3-rasterio python3-scipy \
	python3-pyqtgraph python3-pil python3-venv python3-pip xvfb xauth x11-utils imagemagick sqlite3

export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export QT_QPA_PLATFORM ?= offscreen
export XDG_RUNTIME_DIR ?= /tmp/runtime-$(shell id -u)
export PYTHONPATH := $(PLUGINS)
export QGIS_PLUGINPATH := $(PLUGINS)
export SLIDEWATCH_QGIS_PROCESS ?= /usr/bin/qgis_process.bin

DEMO_OUT ?= $(CURDIR)/demo_output
PYTEST_ARGS ?=

.PHONY: install system venv link warm test demo bench screenshots sample clean help

help:
	@echo "make demo   - install everything, run the pipeline on the bundled sample stack"
	@echo "make test   - install everything, run the whole test suite in real QGIS"
	@echo "make bench  - run the benchmarks (peers installed in .venv-bench)"
	@echo "make screenshots - real QGIS desktop under Xvfb, PNGs into docs/"

install: system venv link warm

system:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "Debian packages already installed"; \
	else \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt
	@[ -x $(PY) ] || $(SYS_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -r requirements.txt
	@$(PY) -c "import numpy, sys; assert numpy.__version__ < '2', numpy.__version__"
	@touch $@

# The package must be importable as `slidewatch` whatever the checkout folder is called.
link:
	@mkdir -p $(PLUGINS) $(NUMBA_CACHE_DIR) $(XDG_RUNTIME_DIR)
	@chmod 700 $(XDG_RUNTIME_DIR)
	@ln -sfn $(CURDIR) $(PLUGINS)/slidewatch
	@mkdir -p $(QGIS_PROFILE)/python/plugins
	@ln -sfn $(CURDIR) $(QGIS_PROFILE)/python/plugins/slidewatch
	@$(PY) scripts/enable_plugin.py $(QGIS_PROFILE)

# Compile every numba kernel the pipeline uses, once (core/numba_setup.py); a later QGIS,
# qgis_process, test or Dask worker process loads them from $(NUMBA_CACHE_DIR).
warm: link
	@$(PY) scripts/warm_kernels.py

test: install
	bash scripts/run_tests.sh $(PYTEST_ARGS)

demo: install
	bash scripts/run_demo.sh $(DEMO_OUT)

bench: install
	bash bench/run_all.sh

screenshots: install
	bash scripts/screenshots.sh

clean:
	rm -rf $(BUILD) .cache .pytest_cache $(DEMO_OUT)
