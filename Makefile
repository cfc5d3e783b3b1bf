# Models and clips are data, never committed: they come from ../shared (override SHARED=...).
SHARED ?= $(abspath ../shared)
export EDGE_AGENT_MODELS_DIR ?= $(SHARED)/models
export EDGE_AGENT_MEDIA_DIR ?= $(SHARED)/media
PY = .venv/bin/python

.PHONY: setup demo lint test unit soak schema bench clean

setup:
	bash deploy/setup-debian.sh

demo: setup
	SHARED=$(SHARED) bash deploy/demo.sh

# lint: ruff (pyflakes, pycodestyle, import order, pyupgrade to 3.10, bugbear) everywhere; mypy on the pure core
lint: setup
	.venv/bin/ruff check agent engines calibration fleet benchmarks tests
	.venv/bin/mypy

# make test ARGS='tests/agent/test_config.py -x -q': arguments go to pytest
test: setup
	$(PY) -m pytest $(ARGS)

# the fast, pure tests: no broker, RTSP server, browser or model run (seconds, not minutes)
unit: setup
	$(PY) -m pytest -m 'not integration and not soak' $(ARGS)

soak: setup
	$(PY) -m pytest -m soak $(ARGS)

# the benchmark runs behind the README's results (minutes each; run them on a quiet machine)
bench: setup
	.venv/bin/edge-agent calibrate --model models/yolox_nano.json --frames $(EDGE_AGENT_MEDIA_DIR)/vtest.avi --ground-truth $(EDGE_AGENT_MEDIA_DIR)/vtest.gt.txt --out var/int8
	$(PY) -m benchmarks.backends --rounds 8 --window 1.0 --int8 var/int8/yolox_nano_int8.json --out benchmarks/results/backends.json
	$(PY) -m benchmarks.peer --rounds 3 --out benchmarks/results/peer.json
	$(PY) -m benchmarks.peer --rounds 3 --manifest models/light_person_detector.json --out benchmarks/results/peer_light.json
	$(PY) -m benchmarks.latency_per_stream --source file --streams 1 2 4 8 --duration 30 --out benchmarks/results/latency_per_stream.json
	$(PY) -m benchmarks.latency_per_stream --source rtsp --streams 1 --duration 30 --out benchmarks/results/latency_rtsp.json
	$(PY) -m benchmarks.streams_per_box --source file --duration 30 --max-streams 16 --manifest models/yolox_nano.json --manifest models/light_person_detector.json --manifest var/int8/yolox_nano_int8.json --out benchmarks/results/streams_per_box.json

schema: setup
	.venv/bin/edge-agent schema --out schema

clean:
	rm -rf .venv var .pytest_cache
