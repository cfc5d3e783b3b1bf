"""The accuracy report that ships with an INT8 model: report.json (complete) and report.md (a short table)."""

from __future__ import annotations

import json
from pathlib import Path

# Fields every report.json has; `ground_truth` is null when no ground truth was given.
REPORT_FIELDS = (
    "model",
    "int8_model",
    "calibration",
    "method_selection",
    "quantized_op_counts",
    "agreement",
    "ground_truth",
    "latency",
    "machine",
    "trt_calibration_caches",
)


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.md into `out_dir`; returns both paths."""
    missing = [f for f in REPORT_FIELDS if f not in report]
    if missing:
        raise ValueError(f"report lacks fields {missing}")
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


def _cell(value: object) -> str:
    return "n/a" if value is None else str(value)


def markdown(report: dict) -> str:
    """A few lines and tables a reviewer reads before approving an OTA rollout."""
    model, int8 = report["model"], report["int8_model"]
    calibration, selection = report["calibration"], report["method_selection"]
    lines = [
        f"# INT8 report: {model['name']}",
        "",
        f"- FP32 `{model['file']}` sha256 `{model['sha256']}`",
        f"- INT8 `{int8['file']}` sha256 `{int8['sha256']}`",
        f"- calibration: {calibration['frames']} frames, method **{selection['chosen']}** "
        f"(chosen by {selection['criterion']}), evaluation on {calibration['eval_frames']} other frames",
        "",
        "| method | score |",
        "|---|---|",
        *(f"| {m} | {_cell(s)} |" for m, s in selection["scores"].items()),
        "",
    ]
    truth = report["ground_truth"]
    if truth is not None:
        lines += [
            "| ground truth | boxes | FP32 AP50 | INT8 AP50 | drop (points) |",
            "|---|---|---|---|---|",
            f"| {truth['class']} | {truth['truth_boxes']} | {_cell(truth['fp32_ap50'])} | "
            f"{_cell(truth['int8_ap50'])} | {_cell(truth['drop_points'])} |",
            "",
        ]
    lines += [
        "| class (INT8 vs FP32 reference) | FP32 boxes | AP50 | recall | precision |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {row['reference_boxes']} | {_cell(row['ap50'])} | {_cell(row['recall'])} | {_cell(row['precision'])} |"
            for name, row in report["agreement"].items()
        ),
        "",
        "| latency per frame | median ms | min ms | speed-up vs FP32 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {row['median_ms']} | {row['min_ms']} | {row['speedup_vs_first']} |"
            for name, row in report["latency"].items()
        ),
        "",
        f"Machine: {report['machine']['cpu']} ({report['machine']['cores']} cores, "
        f"VNNI: {report['machine']['vnni']}), onnxruntime {report['machine']['onnxruntime']}.",
        "",
    ]
    return "\n".join(lines)
