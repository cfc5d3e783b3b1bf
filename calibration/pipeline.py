"""One calibration run: frames -> ranges per method -> QDQ candidates -> measured choice -> outputs.

Outputs in `out_dir`: `<model>_int8.onnx` (tuned for ONNX Runtime on this CPU) and
`<model>_int8_trt.onnx` (for TensorRT: symmetric int8, see calibration.quantize.TENSORRT),
each with its manifest, and report.json + report.md measuring both.
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
from calibration.frames import (
    DEFAULT_MIN_DIFFERENCE,
    SampledFrame,
    frame_count_of,
    read_frames,
    sample_frames,
)
from calibration.metrics import load_mot_ground_truth
from calibration.quantize import (
    METHODS,
    TENSORRT,
    FeedReader,
    Method,
    QuantOptions,
    collect_ranges,
    op_counts,
    prepare,
    quantize_qdq,
    tensorrt_problems,
)
from calibration.report import write_report
from engines.detector import Detector
from engines.manifest import ModelError, ModelManifest, load_manifest, resolve_model_file, sha256_of
from engines.preprocess import Letterbox
from engines.progress import Progress
from engines.registry import open_engine
from engines.types import Detections

# Evaluation frames are kept this many frames away from any calibration frame.
EVAL_GUARD_FRAMES = 1
PERSON_CLASS = "person"
# Per export: the suffix of its files and how ONNX Runtime evaluates it. The TensorRT model
# runs with graph optimizations off, so ONNX Runtime computes its Q/DQ arithmetic as written,
# as TensorRT does (its fused AVX2 kernels would saturate 8-bit weights, which TensorRT never does).
EXPORTS: dict[str, tuple[str, dict]] = {
    "onnxruntime": ("_int8", {}),
    "tensorrt": ("_int8_trt", {"graph_optimization": "disable"}),
}


@dataclass(frozen=True)
class CalibrationConfig:
    """What one `calibrate` run does; defaults are the CLI's."""

    frames: int = 100
    eval_frames: int = 100
    methods: tuple[Method, ...] = METHODS
    ground_truth: Path | None = None
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
        options = {"onnxruntime": config.options, "tensorrt": TENSORRT}
        found: dict[tuple[str, str], list[Detections]] = {}
        with Progress(len(calib) * len(config.methods), "calibrating") as bar:
            for method in config.methods:
                ranges = collect_ranges(prepared_path, reader, method, work, on_frames=bar.update)
                for export, (suffix, eval_options) in EXPORTS.items():
                    candidate = work / f"{method}{suffix}.onnx"
                    quantize_qdq(prepared_path, ranges, tail, candidate, options[export], work)
                    engine = open_engine("onnxruntime", candidate, **eval_options)
                    with Detector(manifest, engine, "", confidence=AP_CONFIDENCE) as det:
                        found[method, export] = det.detect(images)
        sections = {
            export: _export(manifest, work, out_dir, export, {m: found[m, export] for m in config.methods}, fp32_found, truth)
            for export in EXPORTS
        }
        int8_file = out_dir / sections["onnxruntime"]["int8_model"]["file"]
        latency = _latency(model_path, int8_file, letterbox(images[:1])[0].copy(), config.latency_rounds)
        report = {
            "model": {"name": manifest.name, "file": manifest.file, "sha256": fp32.model_sha256},
            **sections["onnxruntime"],
            "calibration": {
                "frames": len(calib), "eval_frames": len(evaluation), "sources": sources,
                "frame_indices": {s: [f.index for f in calib if f.source == s] for s in sources},
                "eval_frame_indices": [f.index for f in evaluation],
                "options": asdict(config.options), "excluded_float_nodes": len(tail),
            },
            "latency": latency,
            "machine": _machine(),
            "tensorrt": {**sections["tensorrt"], "options": asdict(TENSORRT)},
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


def _export(manifest: ModelManifest, work: Path, out_dir: Path, export: str, found_by_method, fp32_found, truth) -> dict:
    """Choose the best method's model of one export, ship it with its manifest (checked as the
    runtime will open it) and return its report section."""
    suffix, eval_options = EXPORTS[export]
    scores, criterion = _scores(manifest, fp32_found, found_by_method, truth)
    chosen = max(found_by_method, key=lambda m: (scores[m] if scores[m] is not None else -1.0))
    model = onnx.load_model(str(work / f"{chosen}{suffix}.onnx"))
    problems = tensorrt_problems(model) if export == "tensorrt" else []
    if problems:
        raise ModelError(f"the TensorRT export is not what TensorRT parses: {'; '.join(problems[:5])}")
    written, written_path = _write_int8(manifest, work / f"{chosen}{suffix}.onnx", out_dir, chosen, suffix, export)
    with Detector.open(written_path, out_dir, **eval_options) as int8:
        sha256 = int8.model_sha256
    int8_found = found_by_method[chosen]
    return {
        "int8_model": {"name": written.name, "file": written.file, "sha256": sha256, "manifest": written_path.name},
        "method_selection": {"criterion": criterion, "scores": scores, "chosen": chosen},
        "quantized_op_counts": op_counts(model),
        "agreement": agreement(fp32_found, int8_found, manifest.classes),
        "ground_truth": _truth_row(manifest, fp32_found, int8_found, truth),
    }


def _truth_row(manifest: ModelManifest, fp32_found, int8_found, truth) -> dict | None:
    if truth is None:
        return None
    return {"class": PERSON_CLASS, **true_ap50(fp32_found, int8_found, truth, manifest.classes.index(PERSON_CLASS))}


def _write_int8(
    manifest: ModelManifest, model_path: Path, out_dir: Path, method: str, suffix: str, export: str
) -> tuple[ModelManifest, Path]:
    """Copy the chosen QDQ model into `out_dir` with its own validated manifest."""
    name = f"{manifest.name}{suffix}"
    target = out_dir / f"{name}.onnx"
    shutil.copyfile(model_path, target)
    int8 = ModelManifest.model_validate({
        **manifest.model_dump(),
        "name": name, "file": target.name, "sha256": sha256_of(target), "size_bytes": target.stat().st_size,
        "url": None, "precision": "int8",
        "notes": f"INT8 QDQ of {manifest.file} (sha256 {manifest.sha256}) for {export}, {method} calibration; "
        "see report.json.",
    })
    manifest_path = out_dir / f"{name}.json"
    manifest_path.write_text(int8.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return int8, manifest_path


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
