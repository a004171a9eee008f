# The front door: every README command is a target here. Targets create .venv themselves,
# and call .venv/bin/newsletter: nothing needs activating. Other commands: .venv/bin/newsletter.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONTENT ?=
PORT    ?= 8000
PIP     := $(BIN)/python -m pip --disable-pip-version-check

# What `make install` installs: every package pinned, with the hashes of its files
# (requirements.lock is the same pins without the dev tools, for a server). `make lock`
# writes both from pyproject.toml; `make upgrade` moves every pin to the newest release
# within pyproject's bounds. LOCK_ARGS passes options on, e.g. --upgrade-package NAME.
LOCK       ?= requirements-dev.lock
LOCK_ARGS  ?=
UV_VERSION := 0.13.9
UV         := $(BIN)/uv
# One resolution for every platform (Linux, macOS, Windows; any CPU) and every Python from
# this oldest one (pyproject's requires-python) up, with the hashes of every file.
LOCK_PYTHON := 3.11
UV_COMPILE  = $(UV) pip compile --quiet --universal --python-version $(LOCK_PYTHON) \
	--generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS)
BUILD_REQS  := $(VENV)/build-system-requires.txt

.PHONY: install lock upgrade test lint check preview send serve dev doctor archive bench demo clean

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "make: newsletter-pipeline needs Python 3.11 or newer; $(PY) is" \
			"$$($(PY) -V 2>&1). Name another: make PY=python3.12 ..."; exit 1; }
	$(PY) -m venv $(VENV)

# Re-runs when pyproject.toml or the lock changes. pip checks every file's hash; the
# project itself goes in editable, without dependencies, built by the locked setuptools.
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) install -q --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@$(PIP) check >/dev/null || { $(PIP) check; \
		echo "make: $(LOCK) does not match pyproject.toml: run make lock"; exit 1; }
	touch $(STAMP)

install: $(STAMP)

$(UV): | $(BIN)/python
	$(PIP) install -q uv==$(UV_VERSION)

# Needs only pyproject.toml (not an install from the old lock), so it works right after a
# merge that added a dependency.
lock: | $(UV)
	@test "$$($(UV) --version | cut -d' ' -f2)" = $(UV_VERSION) || $(PIP) install -q uv==$(UV_VERSION)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' > $(BUILD_REQS)
	$(UV_COMPILE) pyproject.toml $(BUILD_REQS) --extra dev -o requirements-dev.lock
	$(UV_COMPILE) pyproject.toml $(BUILD_REQS) -c requirements-dev.lock -o requirements.lock
	@echo "make lock: wrote requirements-dev.lock and requirements.lock; make test installs them"

upgrade: LOCK_ARGS += --upgrade
upgrade: lock

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: $(STAMP)
	$(BIN)/newsletter check $(CONTENT)

preview: $(STAMP)
	$(BIN)/newsletter preview $(CONTENT)

send: $(STAMP)
	$(BIN)/newsletter send $(CONTENT) $(SEND_ARGS)

serve: $(STAMP)
	$(BIN)/newsletter serve --port $(PORT) $(SERVE_ARGS)

doctor: $(STAMP)
	$(BIN)/newsletter doctor $(DOCTOR_ARGS)

dev: $(STAMP)
	$(BIN)/newsletter dev $(CONTENT)

archive: $(STAMP)
	$(BIN)/newsletter archive $(ARCHIVE_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/python -m pipeline.demo

clean:
	rm -rf var/preview var/outbox .pytest_cache
