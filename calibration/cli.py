"""`edge-agent calibrate`: the lead's CLI calls `add_calibrate_parser(subparsers)`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_calibrate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `calibrate` on the CLI's subparsers; the handler is set as `func`."""
    from calibration.frames import DEFAULT_MIN_DIFFERENCE
    from calibration.quantize import METHODS

    p = subparsers.add_parser(
        "calibrate",
        help="make INT8 QDQ models (one for ONNX Runtime, one for TensorRT), their manifests and an accuracy report",
    )
    p.add_argument("--model", type=Path, required=True, help="manifest JSON of the FP32 model (e.g. models/yolox_nano.json)")
    p.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("EDGE_AGENT_MODELS_DIR", "models")),
        help="folder holding the manifest's model file (default: $EDGE_AGENT_MODELS_DIR)",
    )
    p.add_argument("--frames", nargs="+", required=True, metavar="SOURCE", help="clips or camera URLs to sample")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--count", type=int, default=100, help="calibration frames (default 100)")
    p.add_argument("--eval-count", type=int, default=100, help="held-out evaluation frames (default 100)")
    p.add_argument("--ground-truth", type=Path, default=None, help="MOT-format ground truth of the first SOURCE")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="calibration methods to compare")
    p.add_argument("--min-difference", type=float, default=DEFAULT_MIN_DIFFERENCE,
                   help="grey levels under which two frames count as duplicates")
    p.add_argument("--weight-type", choices=("int8", "uint8"), default="int8",
                   help="ONNX Runtime export: int8 (fast u8s8 kernels) or uint8 (8-bit exact on AVX2 without VNNI, slower)")
    p.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                   help="ONNX Runtime export: full 8-bit int8 weights, only for CPUs with VNNI (AVX2 alone saturates)")
    p.set_defaults(func=run_calibrate)
    return p


def run_calibrate(args: argparse.Namespace) -> int:
    """Handler: 0 on success, 1 for a refused model or too few frames (message on stderr)."""
    from calibration.frames import TooFewFramesError
    from calibration.pipeline import CalibrationConfig, calibrate
    from calibration.quantize import QuantOptions
    from engines.manifest import ModelError

    if args.count < 1 or args.eval_count < 1:
        print("calibrate: --count and --eval-count must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    config = CalibrationConfig(
        frames=args.count, eval_frames=args.eval_count, methods=tuple(args.methods),
        ground_truth=args.ground_truth, min_difference=args.min_difference,
        options=QuantOptions(weight_type=args.weight_type, reduce_range=args.reduce_range),
    )
    if (problem := _missing_input(args)) is not None:  # before the model loads: seconds, not minutes
        print(f"calibrate: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        calibrate(args.model, args.models_dir, list(args.frames), args.out, config)
    except ModelError as exc:
        print(f"calibrate: model refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (TooFewFramesError, ValueError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print((args.out / "report.md").read_text(encoding="utf-8"))
    return EXIT_OK


def _missing_input(args: argparse.Namespace) -> str | None:
    """What is missing among the given files, said with what to give instead; None when all are there."""
    for source in args.frames:
        if "://" not in source and not Path(source).is_file():
            return (
                f"--frames {source}: no such video file; give clips (e.g. $EDGE_AGENT_MEDIA_DIR/vtest.avi) "
                "or camera URLs (rtsp://...)"
            )
    if args.ground_truth is not None and not args.ground_truth.is_file():
        return f"--ground-truth {args.ground_truth}: no such file; give the first clip's MOT ground truth or leave it out"
    return None
