# Models and clips are data, never committed: they come from ../shared (override SHARED=...).
SHARED ?= $(abspath ../shared)
export EDGE_AGENT_MODELS_DIR ?= $(SHARED)/models
export EDGE_AGENT_MEDIA_DIR ?= $(SHARED)/media
PY = .venv/bin/python

.PHONY: setup demo lint test unit soak schema bench eval-alarms eval-variants eval-falls tune-falls eval-crowd crowd-fit clean

setup:
	bash deploy/setup-debian.sh

demo: setup
	SHARED=$(SHARED) bash deploy/demo.sh

# lint: ruff (pyflakes, pycodestyle, import order, pyupgrade to 3.10, bugbear) everywhere; mypy on the pure core;
# no stdlib newer than Python 3.10 (JetPack 6's Python); the TensorRT backend against NVIDIA's published API
lint: setup
	.venv/bin/ruff check agent engines calibration fleet benchmarks testbed tests
	.venv/bin/mypy
	.venv/bin/vermin --target=3.10- --no-tips --violations --eval-annotations agent engines calibration fleet
	bash .ci/tensorrt-types

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
	$(PY) -m benchmarks.streams_per_box --source file --duration 20 --start 4 --max-streams 16 --manifest models/yolox_nano.json --mode every --mode fps5 --mode fps5-320 --out benchmarks/results/streams_per_box_modes.json
	$(PY) -m benchmarks.detect_accuracy --out benchmarks/results/detect_accuracy.json

# fire / abandoned_object / person_down / weapon on the full hard-negative set (generated into var/) and every
# shared clip (vtest, ABODA, FURG, the 62 Le2i): per clip and kind, the alarms and when (minutes; detections cached)
eval-alarms: setup
	$(PY) -m benchmarks.hard_negatives --out var/hard_negatives --set full
	$(PY) -m benchmarks.eval_alarms --clips var/hard_negatives $(EDGE_AGENT_MEDIA_DIR) $(EDGE_AGENT_MEDIA_DIR)/abandoned \
		$(EDGE_AGENT_MEDIA_DIR)/fire $(EDGE_AGENT_MEDIA_DIR)/fall --cache var/detections --json benchmarks/results/eval_alarms.json

# the same defaults on the shared clips as other cameras would give them (benchmarks/variants.py: half the frame rate,
# 1.5x larger, mirrored; H.264 again): alarms on vtest, ABODA 4 and FURG; person_down on the 62 Le2i clips (~40 min);
# records var/falls_<variant> for tune-falls
eval-variants: setup
	$(PY) -m benchmarks.variants --out var/variants
	nice -n 10 $(PY) -m benchmarks.eval_alarms --clips var/variants/alarms --cache var/detections \
		--json benchmarks/results/eval_alarms_variants.json
	for v in half_rate scaled mirrored; do \
		nice -n 10 $(PY) -m benchmarks.eval_falls --clips var/variants/falls_$$v --also var/variants/alarms/vtest_$$v.mp4 \
			--also var/variants/alarms/aboda_video4_$$v.mp4 --also var/variants/alarms/furg_house6_$$v.mp4 \
			--cache var/falls_$$v --json benchmarks/results/falls_$$v.json || exit 1; \
	done

# person_down on the 62 labelled Le2i clips (and vtest, ABODA, FURG: none expected) through the real pipeline, with
# default settings: recall, false alarms, latency per room (about 20k frames: ~10 min); records var/falls for tune-falls
eval-falls: setup
	nice -n 10 $(PY) -m benchmarks.eval_falls --clips $(EDGE_AGENT_MEDIA_DIR)/fall --also $(EDGE_AGENT_MEDIA_DIR)/vtest.avi \
		--also $(EDGE_AGENT_MEDIA_DIR)/abandoned/aboda_video4.avi --also $(EDGE_AGENT_MEDIA_DIR)/fire/furg_house6.mp4 \
		--cache var/falls --json benchmarks/results/falls.json

# person_down settings by leave-one-room-out cross-validation, replayed on what eval-falls and eval-variants recorded
# (no model; run those first): trained on the other rooms in all forms, measured on the held-out room as recorded
tune-falls: setup
	nice -n 10 $(PY) -m benchmarks.tune_falls --cache var/falls --labels $(EDGE_AGENT_MEDIA_DIR)/fall \
		$(foreach v,half_rate scaled mirrored,--augment var/falls_$(v) var/variants/falls_$(v)) \
		--json benchmarks/results/falls_tuning.json

# crowd counts against the truth through the real pipeline (crowded mode, default settings): the Mall clip
# (1000 frames), the 80 ShanghaiTech B stills and vtest.avi (a sparse scene); MAE, MRE, bias, correlation
# (detections cached: ~15 min cold)
eval-crowd: setup
	nice -n 10 $(PY) -m benchmarks.eval_crowd --clip $(EDGE_AGENT_MEDIA_DIR)/crowd/mall_1001-2000_2fps.mp4 \
		--counts $(EDGE_AGENT_MEDIA_DIR)/crowd/mall_1001-2000_counts.csv --cache var/crowd --cost 20 --json benchmarks/results/crowd_mall.json
	nice -n 10 $(PY) -m benchmarks.eval_crowd --images $(EDGE_AGENT_MEDIA_DIR)/crowd/shanghaitech_b \
		--counts $(EDGE_AGENT_MEDIA_DIR)/crowd/shanghaitech_b/counts.csv --cache var/crowd --cost 3 --json benchmarks/results/crowd_shanghaitech.json
	nice -n 10 $(PY) -m benchmarks.eval_crowd --clip $(EDGE_AGENT_MEDIA_DIR)/vtest.avi \
		--counts $(EDGE_AGENT_MEDIA_DIR)/vtest.gt.txt --cache var/crowd --json benchmarks/results/crowd_vtest.json

# the crowd area estimate's constants by cross-validation (halves of each set, both ways) on eval-crowd's cache
crowd-fit: setup
	nice -n 10 $(PY) -m benchmarks.crowd_fit --cache var/crowd --json benchmarks/results/crowd_fit.json

schema: setup
	.venv/bin/edge-agent schema --out schema

clean:
	rm -rf .venv var .pytest_cache
