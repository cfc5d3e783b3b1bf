# Models and clips are data, never committed: they come from ../shared (override SHARED=...).
SHARED ?= $(abspath ../shared)
export EDGE_AGENT_MODELS_DIR ?= $(SHARED)/models
export EDGE_AGENT_MEDIA_DIR ?= $(SHARED)/media
PY = .venv/bin/python

.PHONY: setup demo test soak schema bench clean

setup:
	bash deploy/setup-debian.sh

demo: setup
	SHARED=$(SHARED) bash deploy/demo.sh

test: setup
	$(PY) -m pytest

soak: setup
	$(PY) -m pytest -m soak

schema: setup
	.venv/bin/edge-agent schema --out schema

clean:
	rm -rf .venv var .pytest_cache
