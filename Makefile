# migw: two commands from a fresh Debian / Raspberry Pi OS machine.
#   make demo   - the whole gateway on simulated hardware
#   make test   - every check (ruff, mypy --strict, pytest with a real Mosquitto)
#   make bench  - throughput and memory figures (table + JSON lines)
#   make interop - the demo against a real Home Assistant (own virtualenv .venv-ha)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest bench deps clean install uninstall interop

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "migw needs Python >= 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		echo "python3 -m venv failed: installing python3-venv"; \
		apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,bench]'
	@touch $(STAMP)

deps: $(STAMP) system-deps node-deps

.PHONY: system-deps node-deps
system-deps:
	@sh tools/system-deps.sh

# zigbee-herdsman for the Zigbee cross-checks (npm into .cache/herdsman, no lockfile)
node-deps: system-deps
	@sh tools/herdsman.sh

demo: deps install-cli
	$(VENV)/bin/migw run --demo $(DEMO_ARGS)

# `migw` on the PATH of a new shell: a link to the virtualenv's command in ~/.local/bin
# (on the PATH of a Debian / Raspberry Pi OS login shell once the directory exists).
BINDIR ?= $(HOME)/.local/bin
.PHONY: install-cli
install-cli: $(STAMP)
	@BINDIR="$(BINDIR)" sh tools/install-cli.sh "$(CURDIR)/$(VENV)/bin/migw"

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: deps
	$(PY) -m pytest

test: deps lint typecheck pytest

# A real Home Assistant against the demo (tests/interop). HA lives in its own virtualenv so
# its pins never meet ours; it is created once and reused while its requirements stay the same.
HA_VENV  ?= .venv-ha
HA_STAMP := $(HA_VENV)/.installed

$(HA_STAMP): tests/interop/requirements-ha.txt
	@test -x $(HA_VENV)/bin/python || $(PYTHON) -m venv $(HA_VENV)
	$(HA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(HA_VENV)/bin/python -m pip install --quiet -r tests/interop/requirements-ha.txt
	@touch $(HA_STAMP)

interop: deps $(HA_STAMP)
	MIGW_HA_PYTHON=$(HA_VENV)/bin/python $(PY) -m pytest tests/interop

bench: deps
	$(PY) -m bench

# The systemd service (docs/operations.md): sudo make install / sudo make uninstall.
# DESTDIR=/staging/root installs into a staging root; PURGE=1 also removes config and data.
DESTDIR ?=
PURGE ?= 0

install:
	DESTDIR="$(DESTDIR)" PYTHON="$(PYTHON)" sh tools/install.sh

uninstall:
	DESTDIR="$(DESTDIR)" PURGE="$(PURGE)" sh tools/uninstall.sh

clean:
	rm -rf $(VENV) $(HA_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
