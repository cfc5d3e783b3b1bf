"""FP32 ONNX -> INT8 QDQ ONNX: opset upgrade, node naming, float head, calibrated ranges.

The steps a naive `quantize_static` skips, each of which cost accuracy or
speed when skipped (see ../shared/models/README.md):
- opset >= 13, so weights are quantized per output channel (DequantizeLinear's
  `axis` appeared in opset 13); per-tensor weights of depthwise convs lose most detections;
- every node named, because `nodes_to_exclude` matches by name and an unnamed
  node silently escapes exclusion;
- the head's tail (every node after the last Conv/Gemm/MatMul on the way to the
  outputs: Sigmoid, Concat, Mul, Reshape, decode arithmetic) left in float:
  8-bit scores concentrate in a few levels around the confidence threshold.

Two exports come from the same calibrated ranges: one tuned for ONNX Runtime on
this CPU (`QuantOptions()`) and one TensorRT accepts (`TENSORRT`, checked by
`tensorrt_problems`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import version_converter

from engines.manifest import ModelError

QDQ_MIN_OPSET = 13
# Ops that carry the weights: the tail after the last of them is decode arithmetic.
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})

Method = Literal["minmax", "percentile", "entropy"]
METHODS: tuple[Method, ...] = ("minmax", "percentile", "entropy")


@dataclass(frozen=True, slots=True)
class QuantOptions:
    """Knobs of the QDQ graph. Measured on yolox_nano, 2-core AVX2 (no VNNI) VM, onnxruntime 1.31,
    100 vtest.avi ground-truth frames (FP32 person AP50 87.4), single-thread CPU ms per frame:

        u8 act x s8 weight, reduce_range   AP50 84.5   1.17x faster than FP32   (default)
        u8 x s8, full 8-bit weights        AP50 82.2   int16 saturation in vpmaddubsw
        u8 x u8, full 8-bit weights        AP50 86.3   0.92x (slower than FP32: no u8u8 fast path)
        s8 x s8                            -           0.42x (AVX2 has no s8s8 kernel)

    On a VNNI CPU (vpdpbusd sums in int32, no saturation) reduce_range should be off.
    """

    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    # 7-bit weights: vpmaddubsw sums two u8*s8 products into a saturating int16, which 8-bit weights overflow.
    reduce_range: bool = True
    symmetric_activations: bool = False
    quantize_bias: bool = True
    # Q/DQ only on the inputs of Conv/Gemm/MatMul, none on their outputs or other ops.
    weighted_inputs_only: bool = False
    # Grouped (depthwise) convolutions left in float.
    float_grouped_convs: bool = False


# What TensorRT's ONNX parser accepts and runs well (TensorRT developer guide, "Explicit
# Quantization": symmetric signed INT8 only, zero point 0; "Q/DQ layer-placement
# recommendations": quantize the inputs of weighted layers, not their outputs, so
# Conv+SiLU fuse), per-channel 8-bit weights, bias left in float (no bias Q/DQ).
# Depthwise convolutions stay float: with one per-tensor scale, a channel of small range
# is crushed and nothing averages it out (each output channel sees one input channel).
# Measured on yolox_nano, 100 calibration + 100 held-out vtest frames, person AP50 through
# ONNX Runtime (FP32 90.23): all convs and activations int8 0.0-8.5; Q/DQ on weighted
# inputs only 19-61; plus float depthwise 88.6-89.7 (minmax, percentile, entropy).
TENSORRT = QuantOptions(
    activation_type="int8",
    reduce_range=False,
    symmetric_activations=True,
    quantize_bias=False,
    weighted_inputs_only=True,
    float_grouped_convs=True,
)


def upgrade_opset(model: onnx.ModelProto, opset: int = QDQ_MIN_OPSET) -> onnx.ModelProto:
    """The model at default-domain opset >= `opset` (unchanged if already there), checked."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return model
    try:
        upgraded = version_converter.convert_version(model, opset)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # the converter raises plain RuntimeError/ValidationError
        raise ModelError(f"cannot upgrade the graph from opset {current} to {opset}: {exc}") from exc
    return upgraded


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique `<op_type>_<index>` name (in place; returns `model`)."""
    taken = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return model


def float_tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from which no Conv/Gemm/MatMul is reachable downstream: the
    detection head's final activations, concatenations and decode arithmetic.

    Raises ModelError if a node is unnamed (call `name_nodes` first) or if the
    graph has no weighted op at all (nothing sensible to quantize).
    """
    nodes = list(model.graph.node)
    if any(not n.name for n in nodes):
        raise ModelError("float_tail_nodes needs every node named; call name_nodes first")
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    feeds_weighted: dict[str, bool] = {}

    def reaches_weighted(node: onnx.NodeProto) -> bool:
        # Iterative post-order over consumers: graphs are hundreds of nodes deep.
        stack = [node]
        while stack:
            top = stack[-1]
            if top.name in feeds_weighted:
                stack.pop()
                continue
            nexts = [c for out in top.output for c in consumers.get(out, [])]
            pending = [c for c in nexts if c.name not in feeds_weighted]
            if pending:
                stack.extend(pending)
                continue
            feeds_weighted[top.name] = any(c.op_type in _WEIGHTED_OPS or feeds_weighted[c.name] for c in nexts)
            stack.pop()
        return feeds_weighted[node.name]

    if not any(n.op_type in _WEIGHTED_OPS for n in nodes):
        raise ModelError("graph has no Conv/Gemm/MatMul: nothing to quantize")
    return [n.name for n in nodes if n.op_type not in _WEIGHTED_OPS and not reaches_weighted(n)]


def grouped_conv_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes with group > 1 (depthwise and grouped convolutions)."""
    return [
        n.name for n in model.graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]  # fmt: skip


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT's ONNX parser would refuse this QDQ graph (empty when it would not):
    a Q/DQ that is not int8 (a missing zero point means uint8), a non-zero zero point,
    or a quantized bias (a DequantizeLinear feeding a Conv/Gemm bias input)."""
    initializers = {i.name: i for i in model.graph.initializer}
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    problems = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) == 3:
            if node.input[2] in dequantized:
                problems.append(f"{node.name}: bias {node.input[2]!r} is quantized")
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero_point = initializers.get(node.input[2]) if len(node.input) == 3 else None
        if zero_point is None:
            problems.append(f"{node.name}: no constant zero point (uint8 by default)")
            continue
        if zero_point.data_type != onnx.TensorProto.INT8:
            problems.append(f"{node.name}: {onnx.TensorProto.DataType.Name(zero_point.data_type)} zero point, not INT8")
        elif np.any(onnx.numpy_helper.to_array(zero_point)):
            problems.append(f"{node.name}: non-zero zero point (asymmetric)")
    return problems


def prepare(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Upgraded, fully named copy of `model` and the names of its float tail."""
    upgraded = upgrade_opset(model)
    if upgraded is model:
        upgraded = onnx.ModelProto()
        upgraded.CopyFrom(model)
    name_nodes(upgraded)
    return upgraded, float_tail_nodes(upgraded)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type (a quantized graph's fingerprint, checked by the tests)."""
    return dict(Counter(n.op_type for n in model.graph.node))


class FeedReader:
    """onnxruntime CalibrationDataReader over preprocessed float32 (1, 3, H, W) tensors, read once."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = list(batches)
        self._iter: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {self.input_name: batch}

    def __len__(self) -> int:
        return len(self.batches)


def collect_ranges(
    model_path: Path, reader: FeedReader, method: Method, work_dir: Path, chunk_frames: int = 8,
    on_frames: Callable[[int], None] | None = None,
):
    """Activation ranges of every tensor of the prepared model at `model_path`
    (an onnxruntime TensorsData), from one pass of `reader`.

    Frames go through in chunks of `chunk_frames`: onnxruntime's calibrators keep
    every intermediate tensor of every frame they are given at once (about
    140 MB per 416x416 YOLOX-Nano frame), and merge ranges/histograms across chunks.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    ort_method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[method]
    # uint8 activations start at their zero point, not mid-range: asymmetric ranges keep all 8 bits
    # for one-sided tensors (post-SiLU values are >= -0.28). Percentile defaults to symmetric.
    calibrator = create_calibrator(
        model_path, augmented_model_path=str(work_dir / f"augmented_{method}.onnx"),
        calibrate_method=ort_method, extra_options={"symmetric": False},
    )
    for start in range(0, len(reader), chunk_frames):
        chunk = reader.batches[start : start + chunk_frames]
        calibrator.collect_data(FeedReader(reader.input_name, chunk))
        if on_frames is not None:
            on_frames(len(chunk))
    return calibrator.compute_data()


def quantize_qdq(
    model_path: Path, ranges, exclude: list[str], out_path: Path, options: QuantOptions, work_dir: Path
) -> onnx.ModelProto:
    """Write the QDQ model of the prepared FP32 model at `model_path` to `out_path` and return it.

    `ranges` (TensorsData from `collect_ranges`) are passed through a range file so
    calibration runs once however many variants are quantized.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    ranges_path = work_dir / f"ranges_{ranges.calibration_method.name}.json"
    save_tensors_data(ranges, ranges_path)
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    weighted = sorted(_WEIGHTED_OPS) if options.weighted_inputs_only else None
    if options.float_grouped_convs:
        exclude = exclude + grouped_conv_nodes(onnx.load_model(str(model_path), load_external_data=False))
    quantize_static(
        str(model_path), str(out_path), None,
        quant_format=QuantFormat.QDQ,
        per_channel=options.per_channel,
        reduce_range=options.reduce_range,
        activation_type=types[options.activation_type],
        weight_type=types[options.weight_type],
        nodes_to_exclude=exclude,
        op_types_to_quantize=weighted,
        calibrate_method=ranges.calibration_method,
        calibration_cache_path=ranges_path,
        extra_options={
            "ActivationSymmetric": options.symmetric_activations,
            "WeightSymmetric": options.weight_type == "int8",
            "QuantizeBias": options.quantize_bias,
            "OpTypesToExcludeOutputQuantization": weighted or [],
        },
    )
    return onnx.load_model(str(out_path))
