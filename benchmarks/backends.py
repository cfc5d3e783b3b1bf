"""Per-frame latency and throughput of every available backend and precision, at batch 1, 2, 4, 8.

    python -m benchmarks.backends --int8 calibration/out/yolox_nano_int8.json \
        --out benchmarks/results/backends.json

Runs the agent's Detector (letterbox, engine, decoder, NMS) on decoded frames
of the clip, so decode is left out. ORT FP32 always runs; ORT INT8 runs when
--int8 names a QDQ model (its manifest, or the .onnx file, which then borrows
the FP32 manifest's input and outputs); TensorRT runs where its backend
imports. `--size 416x320` (repeat) adds ORT FP32 with the same model at that input size, as a
camera's `detect.input_size_wh` runs it, and `--sessions N` (repeat) runs each such size with N ONNX Runtime
sessions side by side (each batch split between them) instead of the engine's default. Configurations and batch sizes are interleaved in short windows,
round after round in a shuffled order, so load on a shared machine hits all
of them alike; every figure is also given as a ratio to ORT FP32 at the same
batch size from the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
from pydantic import ValidationError

from agent.settings.detect import DetectSettings
from benchmarks import data
from benchmarks.machine import describe, model_info
from benchmarks.report import print_table, summary_ms, write_result
from engines.detector import Detector
from engines.manifest import load_manifest, sha256_of
from engines.progress import Progress

BATCHES = (1, 2, 4, 8)
REFERENCE = "onnxruntime fp32"


def read_frames(clip: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    frames = []
    while len(frames) < count and (got := capture.read())[0]:
        frames.append(got[1])
    capture.release()
    if not frames:
        raise RuntimeError(f"no frame read from {clip}")
    return frames


def int8_manifest(path: Path, fp32_manifest: Path, folder: Path) -> tuple[Path, Path]:
    """(manifest, models dir) for a QDQ model given as a manifest, or as an .onnx file that takes
    the FP32 manifest's input and outputs (written into `folder`)."""
    if path.suffix == ".json":
        return path, data.models_dir()
    fields = load_manifest(fp32_manifest).model_dump() | {
        "name": path.stem, "file": path.name, "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
        "url": None, "precision": "int8", "notes": f"benchmark manifest for {path}",
    }  # fmt: skip
    manifest = folder / f"{path.stem}.json"
    manifest.write_text(json.dumps(fields))
    return manifest, path.parent


class AtSize:
    """A Detector opened with another input size (`sizes_wh`), every image detected at that size."""

    def __init__(self, detector: Detector, size_wh: tuple[int, int]) -> None:
        self.detector, self.size_wh = detector, size_wh

    def detect(self, images: list[np.ndarray]) -> list:
        return self.detector.detect(images, [self.size_wh] * len(images))

    @property
    def last_timings_s(self) -> dict[str, float]:
        return self.detector.last_timings_s


def open_detectors(args: argparse.Namespace, stack: ExitStack) -> tuple[dict[str, Detector], dict, list[str]]:
    """Every configuration that opens here: label -> Detector, label -> model info, and skip notes."""
    wanted = [("onnxruntime", args.manifest, data.models_dir())]
    notes = []
    if args.int8 is None:
        notes.append("ORT INT8 skipped: no --int8 given (a QDQ .onnx or its manifest, made by `edge-agent calibrate`)")
    else:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wanted.append(("onnxruntime", *int8_manifest(args.int8, args.manifest, folder)))
    wanted += [("tensorrt", manifest, models) for _, manifest, models in list(wanted)]
    detectors, models = {}, {}
    for backend, manifest, models_dir in wanted:
        info = model_info(manifest, models_dir)
        label = f"{backend} {info['precision']}"
        options: dict = {"max_batch": max(args.batches)}
        if backend == "onnxruntime" and args.threads:
            options["intra_op_threads"] = args.threads
        try:
            detectors[label] = stack.enter_context(Detector.open(manifest, models_dir, backend=backend, **options))
        except Exception as exc:  # a backend absent here (no tensorrt, no GPU) is a note, not a failure
            notes.append(f"{label} skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        models[label] = info | {"engine_max_batch": detectors[label].max_batch}
    for size in args.size:  # the FP32 model at another input size, as a camera's detect.input_size_wh runs it
        wh = tuple(int(v) for v in size.split("x"))
        for sessions in args.sessions or [None]:  # ORT's default layout, or each number of sessions asked for
            label = f"onnxruntime fp32 {size}" + ("" if sessions is None else f" {sessions} sessions")
            options = {"max_batch": max(args.batches), "sessions": sessions} | (
                {"intra_op_threads": args.threads} if args.threads else {}
            )
            opened = stack.enter_context(Detector.open(args.manifest, data.models_dir(), sizes_wh=[wh], **options))
            detectors[label] = AtSize(opened, wh)
            models[label] = model_info(args.manifest, data.models_dir()) | {"input_size_wh": list(wh), "sessions": sessions}
    return detectors, models, notes


def measure(
    detectors: dict[str, Detector], frames: list[np.ndarray], batches: tuple[int, ...], rounds: int, window_s: float
) -> dict:
    """label -> batch -> lists of call seconds and inference seconds, interleaved in windows of `window_s`."""
    cells = [(label, b) for label in detectors for b in batches]
    calls: dict = {cell: [] for cell in cells}
    infer: dict = {cell: [] for cell in cells}
    for label, b in cells:  # warm-up: first runs allocate arenas and pick kernels
        detectors[label].detect(frames[:b])
    order = random.Random(0)
    with Progress(rounds * len(cells), f"measuring (about {rounds * len(cells) * window_s:.0f} s)") as bar:
        for _ in range(rounds):
            order.shuffle(cells)
            for label, b in cells:
                detector, deadline, start = detectors[label], time.perf_counter() + window_s, 0
                while time.perf_counter() < deadline:
                    batch = [frames[(start + i) % len(frames)] for i in range(b)]
                    t0 = time.perf_counter()
                    detector.detect(batch)
                    calls[(label, b)].append(time.perf_counter() - t0)
                    infer[(label, b)].append(detector.last_timings_s["inference"])
                    start += b
                bar.update()
    return {"calls": calls, "inference": infer}


def summarise(samples: dict, labels: list[str], batches: tuple[int, ...]) -> list[dict]:
    rows = []
    for label in labels:
        for b in batches:
            call, inf = samples["calls"][(label, b)], samples["inference"][(label, b)]
            ref_call, ref_inf = samples["calls"][(REFERENCE, b)], samples["inference"][(REFERENCE, b)]
            median_s = float(np.median(call))
            rows.append({
                "config": label, "batch": b,
                "batch_ms": summary_ms(1000 * x for x in call),
                "inference_ms": summary_ms(1000 * x for x in inf),
                "ms_per_frame": round(1000 * median_s / b, 3),
                "frames_per_s": round(b / median_s, 2),
                "speedup_vs_ort_fp32": round(float(np.median(ref_call)) / median_s, 3),
                "inference_speedup_vs_ort_fp32": round(float(np.median(ref_inf)) / float(np.median(inf)), 3),
            })  # fmt: skip
    return rows


def _size(text: str) -> str:
    """WxH, checked as a camera's `detect.input_size_wh` is."""
    w, _, h = text.partition("x")
    try:
        DetectSettings(input_size_wh=(int(w), int(h)))
    except (ValueError, ValidationError) as e:
        raise argparse.ArgumentTypeError(f"{text!r}: give WxH, each side a multiple of 32 (e.g. 416x320)") from e
    return f"{int(w)}x{int(h)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST, help="FP32 model manifest")
    parser.add_argument("--int8", type=Path, default=None, help="QDQ INT8 model: its manifest (.json) or the .onnx")
    parser.add_argument("--clip", type=Path, default=None, help="frames to detect on (default vtest.avi)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--window", type=float, default=1.0, help="seconds per configuration and batch per round")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: the engine's)")
    parser.add_argument("--size", action="append", default=[], type=_size, help="also ORT FP32 at this input size, WxH")
    parser.add_argument(
        "--sessions", action="append", type=int, default=[],
        help="with --size: each size with this many ORT sessions (repeat; default: the engine's, one per core)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    batches = tuple(args.batches)
    frames = read_frames(args.clip or data.default_clip(), 2 * max(batches))
    with ExitStack() as stack:
        detectors, models, notes = open_detectors(args, stack)
        machine = describe(vars(args) | {"models": models})
        samples = measure(detectors, frames, batches, args.rounds, args.window)
    rows = summarise(samples, list(detectors), batches)
    print_table(
        "backends: per call (a frame's latency is its batch's), per frame, and against ORT FP32 at the same batch",
        ["config", "batch", "batch p50 ms", "p99 ms", "ms/frame", "frames/s", "x FP32", "infer x FP32"],
        [[r["config"], r["batch"], r["batch_ms"]["p50"], r["batch_ms"]["p99"], r["ms_per_frame"], r["frames_per_s"],
          r["speedup_vs_ort_fp32"], r["inference_speedup_vs_ort_fp32"]] for r in rows],
    )  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    write_result(args.out, "backends", machine, {"rows": rows, "models": models, "skipped": notes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
