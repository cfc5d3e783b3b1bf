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

# the benchmark runs behind the README's results (minutes each; run them on a quiet machine)
bench: setup
	$(PY) -m benchmarks.backends --rounds 10 --window 1.0 --out benchmarks/results/backends.json
	$(PY) -m benchmarks.latency_per_stream --source file --streams 1 2 4 8 --duration 30 --out benchmarks/results/latency_per_stream.json
	$(PY) -m benchmarks.streams_per_box --source file --duration 30 --max-streams 16 --manifest models/yolox_nano.json --manifest models/light_person_detector.json --out benchmarks/results/streams_per_box.json
	$(PY) -m benchmarks.peer --rounds 3 --out benchmarks/results/peer.json

schema: setup
	.venv/bin/edge-agent schema --out schema

clean:
	rm -rf .venv var .pytest_cache
