# The front door: every README command is a target here. Targets create .venv themselves.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONTENT ?=

.PHONY: install test lint preview send serve dev archive bench demo clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

preview: $(STAMP)
	$(BIN)/newsletter preview $(CONTENT)

send: $(STAMP)
	$(BIN)/newsletter send $(CONTENT) $(SEND_ARGS)

serve: $(STAMP)
	$(BIN)/newsletter serve

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
