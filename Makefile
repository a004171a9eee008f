# The front door: every README command is a target here. Targets create .venv themselves,
# and call .venv/bin/newsletter: nothing needs activating. Other commands: .venv/bin/newsletter.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONTENT ?=
PORT    ?= 8000

.PHONY: install test lint check preview send serve dev doctor archive bench demo clean

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
