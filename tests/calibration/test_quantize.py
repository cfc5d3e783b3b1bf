"""Graph preparation (opset, names, float tail) on small graphs, the op counts of the real QDQ model, and the
structure of the TensorRT export."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration.quantize import (
    float_tail_nodes,
    grouped_conv_nodes,
    name_nodes,
    op_counts,
    prepare,
    tensorrt_problems,
    upgrade_opset,
)
from engines.manifest import ModelError


def _tiny_head(opset: int = 11, named: bool = True) -> onnx.ModelProto:
    """image -> Conv -> Sigmoid -> Mul(conv, sig) -> Conv -> [Sigmoid, Reshape] -> Concat -> output."""
    w1 = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w2")
    shape = numpy_helper.from_array(np.array([1, 2, 16], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"]),
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("Mul", ["c1", "s1"], ["m1"]),
        helper.make_node("Conv", ["m1", "w2"], ["c2"]),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("Reshape", ["s2", "shape"], ["r2"]),
        helper.make_node("Reshape", ["c2", "shape"], ["r1"]),
        helper.make_node("Concat", ["r1", "r2"], ["output"], axis=1),
    ]
    for i, node in enumerate(nodes):
        node.name = f"n{i}" if named else ""
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16])],
        [w1, w2, shape],
    )
    # IR 7: what opset-11 exporters wrote, and within what this onnxruntime reads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def test_upgrade_to_opset_13_keeps_the_graph_running():
    model = upgrade_opset(_tiny_head(opset=11))
    assert model.opset_import[0].version == 13
    image = np.random.default_rng(0).random((1, 3, 4, 4), np.float32)
    before = ort.InferenceSession(_tiny_head().SerializeToString()).run(None, {"image": image})[0]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"image": image})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6)


def test_name_nodes_names_every_node_uniquely_and_keeps_existing_names():
    model = _tiny_head(named=False)
    model.graph.node[0].name = "Sigmoid_1"  # collides with a generated name
    name_nodes(model)
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names) and names[0] == "Sigmoid_1"


def test_float_tail_is_everything_after_the_last_conv():
    tail = float_tail_nodes(_tiny_head())
    assert tail == ["n4", "n5", "n6", "n7"]  # Sigmoid, both Reshapes, Concat; not the backbone's SiLU


def test_float_tail_refuses_unnamed_nodes():
    with pytest.raises(ModelError, match="name_nodes"):
        float_tail_nodes(_tiny_head(named=False))


def test_prepare_copies_and_names(models_dir):
    original = onnx.load_model(str(models_dir / "yolox_nano.onnx"))
    prepared, tail = prepare(original)
    assert original.opset_import[0].version == 11 and prepared.opset_import[0].version == 13
    assert op_counts(prepared) == op_counts(original)
    # YOLOX's head tail: the 3 obj + 3 cls Sigmoids, Concats, Reshapes, Transpose and shape arithmetic.
    tail_ops = op_counts(onnx.helper.make_model(onnx.helper.make_graph(
        [n for n in prepared.graph.node if n.name in set(tail)], "t", [], [])))
    assert tail_ops == {"Constant": 12, "Concat": 7, "Sigmoid": 6, "Shape": 3, "Slice": 3, "Reshape": 3, "Transpose": 1}


def test_quantized_graph_op_counts(yolox_int8, tmp_path):
    """Every Conv gets int8 per-channel weights, the head tail stays float, and ORT fuses the
    QDQ pattern into integer kernels (QLinearConv) rather than running float convs."""
    out_dir, report = yolox_int8
    model = onnx.load_model(str(out_dir / "yolox_nano_int8.onnx"))
    counts = op_counts(model)
    assert report["quantized_op_counts"] == counts
    assert counts["Conv"] == 113 and counts["Sigmoid"] == 110 and counts["Mul"] == 104
    assert counts["QuantizeLinear"] > 300 and counts["DequantizeLinear"] > counts["QuantizeLinear"]
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        weight_dq = producers[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear"
        assert any(a.name == "axis" for a in weight_dq.attribute)  # per-channel (opset >= 13)
    head_sigmoids = [n for n in model.graph.node if n.op_type == "Sigmoid" and n.name.startswith("/head/Sigmoid")]
    assert len(head_sigmoids) == 6
    for sigmoid in head_sigmoids:  # float in, float out
        assert all(c.op_type != "QuantizeLinear" for c in consumers[sigmoid.output[0]])
    assert producers["output"].op_type == "Transpose"

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out_dir / "yolox_nano_int8.onnx"), options, providers=["CPUExecutionProvider"])
    fused = op_counts(onnx.load_model(options.optimized_model_filepath))
    assert fused.get("QLinearConv") == 113 and "Conv" not in fused and "FusedConv" not in fused
    assert fused.get("Sigmoid") == 6  # only the float head tail


def _qdq_conv(zero_point: np.ndarray | None, bias_dq: bool = False) -> onnx.ModelProto:
    """image -> QuantizeLinear -> DequantizeLinear -> Conv (int8 weight through a DequantizeLinear) -> output."""
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.zeros(2, np.int8), "w_zp"),
        numpy_helper.from_array(np.full(2, 0.01, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(2, np.int32) if bias_dq else np.zeros(2, np.float32), "b_raw"),
    ]
    q_inputs = ["image", "s"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(zero_point, "zp"))
        q_inputs.append("zp")
    nodes = [
        helper.make_node("QuantizeLinear", q_inputs, ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", *q_inputs[1:]], ["dq"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="w_dq", axis=0),
    ]
    bias = "b_raw"
    if bias_dq:
        inits.append(numpy_helper.from_array(np.full(2, 0.001, np.float32), "b_s"))
        nodes.append(helper.make_node("DequantizeLinear", ["b_raw", "b_s"], ["b"], name="b_dq", axis=0))
        bias = "b"
    nodes.append(helper.make_node("Conv", ["dq", "w", bias], ["output"], name="conv"))
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 4, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


@pytest.mark.parametrize(
    ("zero_point", "bias_dq", "problem"),
    [
        (np.array(0, np.int8), False, None),
        (np.array(0, np.uint8), False, "q: UINT8 zero point, not INT8"),
        (np.array(3, np.int8), False, "q: non-zero zero point (asymmetric)"),
        (None, False, "q: no constant zero point (uint8 by default)"),
        (np.array(0, np.int8), True, "conv: bias 'b' is quantized"),
    ],
)
def test_tensorrt_problems_name_each_refusal(zero_point, bias_dq, problem):
    model = _qdq_conv(zero_point, bias_dq)
    found = tensorrt_problems(model)
    image = np.random.default_rng(0).random((1, 3, 4, 4), np.float32)
    ort.InferenceSession(model.SerializeToString()).run(None, {"image": image})  # each is a valid ONNX graph
    assert found == [] if problem is None else problem in found


def test_tensorrt_export_is_what_tensorrt_parses(yolox_int8):
    """The TensorRT-bound model: symmetric int8 everywhere (zero points 0), per-channel int8
    weights, float bias, Q/DQ only on the inputs of weighted ops, depthwise convs and the
    head's tail in float. Fails on any non-zero zero point, uint8 Q/DQ or bias Q/DQ."""
    out_dir, report = yolox_int8
    model = onnx.load_model(str(out_dir / "yolox_nano_int8_trt.onnx"))
    assert report["tensorrt"]["quantized_op_counts"] == op_counts(model)
    assert tensorrt_problems(model) == []
    producers = {o: n for n in model.graph.node for o in n.output}
    initializers = {i.name for i in model.graph.initializer}
    grouped = set(grouped_conv_nodes(model))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 113 and len(grouped) == 30
    for conv in convs:
        if conv.name in grouped:
            assert conv.input[1] in initializers  # float weights (its input may share a quantized conv's Q/DQ)
        else:
            weight = producers[conv.input[1]]
            assert weight.op_type == "DequantizeLinear" and any(a.name == "axis" for a in weight.attribute)
            assert producers[conv.input[0]].op_type == "DequantizeLinear"
        assert len(conv.input) < 3 or conv.input[2] in initializers  # float bias
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for dq in (n for n in model.graph.node if n.op_type == "DequantizeLinear"):
        # weighted inputs only (a residual Add may share a convolution's input)
        assert "Conv" in {c.op_type for c in consumers[dq.output[0]]}
    head_sigmoids = [n for n in model.graph.node if n.op_type == "Sigmoid" and n.name.startswith("/head/Sigmoid")]
    assert len(head_sigmoids) == 6
    assert not any(producers[s.input[0]].op_type == "DequantizeLinear" for s in head_sigmoids)
