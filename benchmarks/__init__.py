"""Benchmarks of the real agent: latency per stream, streams per box, backends, a peer baseline.

Each script is `python -m benchmarks.<name> --out benchmarks/results/<name>.json`;
it prints a table and writes JSON (with the machine it ran on) and, where it
has curves, a PNG beside the JSON. Benchmarks are not tests: figures on a
shared machine are noisy, so compare ratios taken within one run.
"""
