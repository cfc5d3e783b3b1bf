"""One calibration run: frames -> ranges per method -> QDQ candidates -> measured choice -> outputs.

Outputs in `out_dir`: `<model>_int8.onnx`, its manifest `<model>_int8.json`,
report.json + report.md, and one TensorRT calibration cache per TensorRT version.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from calibration.evaluate import AP_CONFIDENCE, agreement, measure_latency_ms, true_ap50
from calibration.frames import DEFAULT_MIN_DIFFERENCE, SampledFrame, frame_count_of, read_frames, sample_frames
from calibration.metrics import load_mot_ground_truth
from calibration.progress import Progress
from calibration.quantize import METHODS, FeedReader, Method, QuantOptions, collect_ranges, op_counts, prepare, quantize_qdq
from calibration.report import write_report
from calibration.trt_cache import format_cache, scales_from_ranges
from engines.detector import Detector
from engines.manifest import ModelManifest, load_manifest, resolve_model_file, sha256_of
from engines.preprocess import Letterbox
from engines.registry import open_engine
from engines.types import Detections

# Evaluation frames are kept this many frames away from any calibration frame.
EVAL_GUARD_FRAMES = 1
# JetPack 5.1 and 6.0 ship TensorRT 8.5.2 and 8.6.2, the last releases that calibrate implicitly.
DEFAULT_TRT_VERSIONS = ("8.5.2", "8.6.2")
PERSON_CLASS = "person"


@dataclass(frozen=True)
class CalibrationConfig:
    """What one `calibrate` run does; defaults are the CLI's."""

    frames: int = 100
    eval_frames: int = 100
    methods: tuple[Method, ...] = METHODS
    ground_truth: Path | None = None
    trt_versions: tuple[str, ...] = DEFAULT_TRT_VERSIONS
    options: QuantOptions = field(default_factory=QuantOptions)
    min_difference: float = DEFAULT_MIN_DIFFERENCE
    latency_rounds: int = 6


def calibrate(manifest_path: Path, models_dir: Path, sources: list[str], out_dir: Path, config: CalibrationConfig) -> dict:
    """Run the whole calibration; returns the report (also written to `out_dir`).

    Raises ModelError for a model that is not ONNX, disagrees with its manifest or
    fails its SHA-256, and TooFewFramesError when the sources lack distinct frames.
    """
    manifest = load_manifest(manifest_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with Detector.open(manifest_path, models_dir, confidence=AP_CONFIDENCE) as fp32, \
            tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        work = Path(tmp)
        model_path = resolve_model_file(manifest, models_dir)
        calib, evaluation, truth = _split_frames(sources, config)
        letterbox = Letterbox(manifest.input.size_wh, 1, pad_value=manifest.input.pad_value,
                              channel_order=manifest.input.channel_order, mean=manifest.input.mean, std=manifest.input.std)
        reader = FeedReader(manifest.input.name, (letterbox([f.image])[0].copy() for f in calib))
        prepared, tail = prepare(onnx.load_model(str(model_path)))
        prepared_path = work / "prepared.onnx"
        onnx.save_model(prepared, str(prepared_path))

        images = [f.image for f in evaluation]
        fp32_found = fp32.detect(images)
        candidates: dict[str, tuple[Path, object, list[Detections]]] = {}
        with Progress(len(calib) * len(config.methods), "calibrating") as bar:
            for method in config.methods:
                ranges = collect_ranges(prepared_path, reader, method, work, on_frames=bar.update)
                candidate = work / f"{method}.onnx"
                quantize_qdq(prepared_path, ranges, tail, candidate, config.options, work)
                with Detector(manifest, open_engine("onnxruntime", candidate), "", confidence=AP_CONFIDENCE) as det:
                    candidates[method] = (candidate, ranges, det.detect(images))
        scores, criterion = _scores(manifest, fp32_found, {m: c[2] for m, c in candidates.items()}, truth)
        chosen = max(config.methods, key=lambda m: (scores[m] if scores[m] is not None else -1.0))
        int8_path, ranges, int8_found = candidates[chosen]
        int8_manifest, int8_manifest_path = _write_int8(manifest, int8_path, out_dir, chosen)
        caches = _write_trt_caches(ranges, model_path, int8_manifest.name, config.trt_versions, out_dir)
        int8_file = out_dir / int8_manifest.file
        with Detector.open(int8_manifest_path, out_dir) as int8:  # the shipped files, checked as the runtime will
            latency = _latency(model_path, int8_file, letterbox(images[:1])[0].copy(), config.latency_rounds)
        report = {
            "model": {"name": manifest.name, "file": manifest.file, "sha256": fp32.model_sha256},
            "int8_model": {"name": int8.manifest.name, "file": int8_manifest.file, "sha256": int8.model_sha256,
                           "manifest": int8_manifest_path.name},
            "calibration": {
                "frames": len(calib), "eval_frames": len(evaluation), "sources": sources,
                "frame_indices": {s: [f.index for f in calib if f.source == s] for s in sources},
                "eval_frame_indices": [f.index for f in evaluation],
                "options": asdict(config.options), "excluded_float_nodes": len(tail),
            },
            "method_selection": {"criterion": criterion, "scores": scores, "chosen": chosen},
            "quantized_op_counts": op_counts(onnx.load_model(str(int8_file))),
            "agreement": agreement(fp32_found, int8_found, manifest.classes),
            "ground_truth": _truth_row(manifest, fp32_found, int8_found, truth),
            "latency": latency,
            "machine": _machine(),
            "trt_calibration_caches": caches,
        }
    write_report(report, out_dir)
    return report


def _split_frames(sources: list[str], config: CalibrationConfig):
    """(calibration frames, evaluation frames, ground truth per evaluation frame or None).

    With ground truth (for sources[0]) evaluation takes annotated frames and
    calibration avoids them; without, one sampling pass is split evenly.
    """
    if config.ground_truth is None:
        frames = sample_frames(sources, config.frames + config.eval_frames, min_difference=config.min_difference)
        eval_at = set(np.linspace(0, len(frames) - 1, config.eval_frames).round().astype(int).tolist())
        evaluation = [f for i, f in enumerate(frames) if i in eval_at]
        return [f for i, f in enumerate(frames) if i not in eval_at], evaluation, None
    truth = load_mot_ground_truth(config.ground_truth)
    annotated = sorted(i for i in truth if i < frame_count_of(sources[0]))
    picks = np.linspace(0, len(annotated) - 1, min(config.eval_frames, len(annotated))).round().astype(int)
    indices = sorted({annotated[i] for i in picks})
    evaluation: list[SampledFrame] = list(read_frames(sources[0], indices))
    guard = frozenset(i + d for i in indices for d in range(-EVAL_GUARD_FRAMES, EVAL_GUARD_FRAMES + 1))
    calib = sample_frames(sources, config.frames, min_difference=config.min_difference, exclude={sources[0]: guard})
    return calib, evaluation, [truth[f.index] for f in evaluation]


def _scores(manifest: ModelManifest, fp32_found, found_by_method, truth):
    """Each method's score (percentage points) and what it measures: true person AP50 when
    ground truth is given, else the mean per-class AP50 of agreement with FP32."""
    if truth is not None:
        person = manifest.classes.index(PERSON_CLASS)
        rows = {m: true_ap50(fp32_found, found, truth, person) for m, found in found_by_method.items()}
        return {m: r["int8_ap50"] for m, r in rows.items()}, "person AP50 on ground truth"
    scores = {}
    for method, found in found_by_method.items():
        aps = [r["ap50"] for r in agreement(fp32_found, found, manifest.classes).values() if r["ap50"] is not None]
        scores[method] = round(float(np.mean(aps)), 2) if aps else None
    return scores, "mean per-class AP50 of agreement with FP32"


def _truth_row(manifest: ModelManifest, fp32_found, int8_found, truth) -> dict | None:
    if truth is None:
        return None
    return {"class": PERSON_CLASS, **true_ap50(fp32_found, int8_found, truth, manifest.classes.index(PERSON_CLASS))}


def _write_int8(manifest: ModelManifest, model_path: Path, out_dir: Path, method: str) -> tuple[ModelManifest, Path]:
    """Copy the chosen QDQ model into `out_dir` with its own validated manifest."""
    name = f"{manifest.name}_int8"
    target = out_dir / f"{name}.onnx"
    shutil.copyfile(model_path, target)
    int8 = ModelManifest.model_validate({
        **manifest.model_dump(),
        "name": name, "file": target.name, "sha256": sha256_of(target), "size_bytes": target.stat().st_size,
        "url": None, "precision": "int8",
        "notes": f"INT8 QDQ of {manifest.file} (sha256 {manifest.sha256}), {method} calibration; see report.json.",
    })
    manifest_path = out_dir / f"{name}.json"
    manifest_path.write_text(int8.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return int8, manifest_path


def _write_trt_caches(ranges, fp32_path: Path, name: str, versions: tuple[str, ...], out_dir: Path) -> list[str]:
    """One cache per TensorRT version, for the tensors of the FP32 graph TensorRT will parse."""
    graph = onnx.load_model(str(fp32_path), load_external_data=False).graph
    tensors = {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
    # Ranges are 1-element arrays (per-tensor calibration).
    bounds = {n: (float(np.min(d.range_value[0])), float(np.max(d.range_value[1]))) for n, d in ranges.data.items() if n in tensors}
    scales = scales_from_ranges(bounds)
    written = []
    for version in versions:
        path = out_dir / f"{name}.trt-{version}.calibration.cache"
        path.write_text(format_cache(scales, version), encoding="ascii")
        written.append(path.name)
    return written


def _latency(fp32_path: Path, int8_path: Path, batch: np.ndarray, rounds: int) -> dict:
    engines = {"onnxruntime fp32": open_engine("onnxruntime", fp32_path), "onnxruntime int8": open_engine("onnxruntime", int8_path)}
    try:
        return measure_latency_ms(engines, batch, rounds=rounds)
    finally:
        for engine in engines.values():
            engine.close()


def _machine() -> dict:
    flags, cpu = set(), platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    import onnxruntime

    return {"cpu": cpu, "cores": os.cpu_count(), "avx2": "avx2" in flags,
            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags), "onnxruntime": onnxruntime.__version__}
