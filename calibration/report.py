"""The accuracy report that ships with the INT8 models: report.json (complete) and report.md (a short table)."""

from __future__ import annotations

import json
from pathlib import Path

# Fields every report.json has; `ground_truth` is null when no ground truth was given. The top-level
# model fields are the ONNX Runtime export's; `tensorrt` has the same fields for the TensorRT export.
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
    "tensorrt",
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


def _truth_line(export: str, truth: dict) -> str:
    return (
        f"| {truth['class']} | {export} | {truth['truth_boxes']} | {_cell(truth['fp32_ap50'])} | "
        f"{_cell(truth['int8_ap50'])} | {_cell(truth['drop_points'])} |"
    )


def markdown(report: dict) -> str:
    """A few lines and tables a reviewer reads before approving an OTA rollout."""
    model, calibration = report["model"], report["calibration"]
    exports = {"onnxruntime": report, "tensorrt": report["tensorrt"]}
    lines = [
        f"# INT8 report: {model['name']}",
        "",
        f"- FP32 `{model['file']}` sha256 `{model['sha256']}`",
        *(
            f"- INT8 for {name} `{e['int8_model']['file']}` sha256 `{e['int8_model']['sha256']}`, "
            f"method **{e['method_selection']['chosen']}**"
            for name, e in exports.items()
        ),
        f"- calibration: {calibration['frames']} frames, methods chosen by {report['method_selection']['criterion']}, "
        f"evaluation on {calibration['eval_frames']} other frames",
        "",
        "| method | onnxruntime score | tensorrt score |",
        "|---|---|---|",
        *(
            f"| {m} | {_cell(s)} | {_cell(report['tensorrt']['method_selection']['scores'][m])} |"
            for m, s in report["method_selection"]["scores"].items()
        ),
        "",
    ]
    if report["ground_truth"] is not None:
        lines += [
            "| ground truth | export | boxes | FP32 AP50 | INT8 AP50 | drop (points) |",
            "|---|---|---|---|---|---|",
            *(_truth_line(name, e["ground_truth"]) for name, e in exports.items()),
            "",
        ]
    lines += [
        "| class (INT8 vs FP32 reference) | export | FP32 boxes | AP50 | recall | precision |",
        "|---|---|---|---|---|---|",
        *(
            f"| {cls} | {name} | {row['reference_boxes']} | {_cell(row['ap50'])} | {_cell(row['recall'])} | "
            f"{_cell(row['precision'])} |"
            for name, e in exports.items()
            for cls, row in e["agreement"].items()
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
