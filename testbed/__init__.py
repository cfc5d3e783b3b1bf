"""The real things the tests and the benchmarks run against, on loopback: Mosquitto, a GStreamer RTSP
camera, an MQTT recorder, the agent as a process, and the real pipeline over a clip. Never shipped to a box;
no pytest here (the fixtures wrapping these are tests/support/services.py)."""
