"""ONNX Runtime on CPU behind engines.base.Engine."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import structlog

from engines.base import TensorSpec
from engines.manifest import ModelError

_ORT_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# Absolute tolerance between a batched run and single runs: float32 kernels may
# reorder sums with the batch size; real disagreement (a reshape that folds
# the batch) is orders of magnitude larger.
_BATCH_CHECK_ATOL = 1e-3

# Defaults chosen by measurement on this project's 2-core x86 VM, onnxruntime
# 1.31.1, yolox_nano 416x416 FP32, batch 1. The VM was shared with other test
# runs (load average 2-8), so configs were interleaved in 1 s windows over 6-10
# rounds; figures are the medians of 3 such runs (min in brackets), ms/frame.
# "+decode" = one thread decoding vtest.avi flat out beside inference; its
# frame rate (1050-1550 fps alone) shows what the engine leaves to cameras.
#                         alone          +decode        decode fps kept
#   intra=1               21 (20)        26-46 (21)     820-1330
#   intra=2, no spinning  18-23 (15)     27-40 (22)     620-915
#   intra=2, spinning     17-42 (12)     35-70 (21)     480-750
#   intra=2, opt basic    34 (23)        44 (24)        vs opt all 23 (21) in the same run
#   intra=2, opt disable  39 (25)        55 (28)
#   intra=2, parallel mode, inter=2: 40 (32), no gain on this chain-shaped graph
# Spinning threads burn the core the decode threads need (a third of their
# frames lost) and are no faster once contended, so spinning is off. Two
# intra-op threads barely beat one on this small graph: a single image runs
# fastest on both (yolox_nano at 416x320: 8.5-8.9 ms against 10.5-10.8 on one
# thread), but a batch runs fastest split between a session per core on one
# thread each, side by side (batches of 2 and 4: 182-185 images a second
# against 135-149 on one session of two threads, and 138-147 when a session of
# two threads takes half of it beside one of one thread); onnxruntime 1.32,
# `benchmarks.backends --size 416x320 --sessions 1 --sessions 2`. A graph fixed
# at batch 1 gains most: the light person detector at 256x192 runs 466-477
# images a second image by image on two one-thread sessions side by side,
# against 234-244 on one session of two threads (on the VNNI box of 2026-11-30).
MAX_DEFAULT_SESSIONS = 4


def cores() -> int:
    """CPU cores this process may run on (its affinity, as a container's cpuset limits it)."""
    return len(os.sched_getaffinity(0))


class OnnxRuntimeEngine:
    """One ONNX graph with a single float32 (B, 3, H, W) input on the CPU execution provider.

    A graph saved with batch 1 is made batch-dynamic at load when it runs a
    batch of 2 identically to two single runs; otherwise it stays fixed and runs
    a batch image by image (`graph_batches` False). `input_size_wh` runs the graph at another input size
    than it was saved with (the manifest's `input.graph_size_wh`). A single image runs on a session
    using every core; a larger batch is split between `sessions` more copies of the graph run side by
    side (default one per core, at most MAX_DEFAULT_SESSIONS; 1: no split), each on
    `intra_op_threads` (default the cores shared out between them).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        max_batch: int = 8,
        sessions: int | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        allow_spinning: bool = False,
        graph_optimization: Literal["disable", "basic", "extended", "all"] = "all",
        parallel_execution: bool = False,
        input_size_wh: tuple[int, int] | None = None,
    ) -> None:
        self._log = structlog.get_logger("engines.onnxruntime").bind(model=str(model_path))
        self._options = dict(
            inter_op_threads=inter_op_threads,
            allow_spinning=allow_spinning,
            graph_optimization=graph_optimization,
            parallel=parallel_execution,
        )
        self._path = Path(model_path)
        model = _without_initializer_inputs(_load_onnx(self._path))
        if input_size_wh is not None:
            model = _with_input_size(model, input_size_wh)
        # a single image, and any batch when there is no split, runs on every core; each split session on its share
        single_threads = intra_op_threads or cores()
        self.max_batch = max_batch
        model, probe = self._batched(model, single_threads)
        wanted = sessions or min(cores(), self.max_batch, MAX_DEFAULT_SESSIONS)
        split = wanted if self.max_batch > 1 and wanted > 1 else 0
        self._session = probe or self._open(model, single_threads)
        self._split = [self._open(model, intra_op_threads or max(1, cores() // split)) for _ in range(split)]
        self._pool = ThreadPoolExecutor(split - 1) if split else None
        self.inputs = tuple(_spec(t) for t in self._session.get_inputs())
        self.outputs = tuple(_spec(t) for t in self._session.get_outputs())
        if input_size_wh is not None:  # the outputs' shapes follow the input: as the graph computes them
            self.outputs = _run_shapes(self._session, self.inputs[0], self.outputs)
        self._input_name = self.inputs[0].name
        self._output_names = [t.name for t in self.outputs]
        self._log.info("engine_opened", backend="onnxruntime", max_batch=self.max_batch, split_sessions=split)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: float32 (B, 3, H, W), 1 <= B <= max_batch -> {output name: float32 (B, ...)}."""
        expected = self.inputs[0].shape[1:]
        if batch.dtype != np.float32 or batch.shape[1:] != expected or not 1 <= len(batch) <= self.max_batch:
            raise ValueError(
                f"expected float32 (1..{self.max_batch}, {', '.join(map(str, expected))}), got {batch.dtype} {batch.shape}"
            )
        if len(batch) == 1 or not self._split:
            values = self._run(self._session, batch)
        else:  # ORT releases the GIL: the parts run side by side, the first on this thread
            parts = np.array_split(batch, min(len(batch), len(self._split)))
            later = [self._pool.submit(self._run, s, p) for s, p in zip(self._split[1:], parts[1:])]
            done = [self._run(self._split[0], parts[0])] + [f.result() for f in later]
            values = [np.concatenate(v) for v in zip(*done)]
        return dict(zip(self._output_names, values, strict=True))

    def _run(self, session: ort.InferenceSession, batch: np.ndarray) -> list[np.ndarray]:
        if self.graph_batches or len(batch) == 1:
            return session.run(self._output_names, {self._input_name: np.ascontiguousarray(batch)})
        rows = [self._run(session, batch[i : i + 1]) for i in range(len(batch))]
        return [np.concatenate(v) for v in zip(*rows)]

    def close(self) -> None:
        # ORT frees the sessions' threads and arenas when the last reference goes.
        if self._pool is not None:
            self._pool.shutdown()
        self._session, self._split, self._pool = None, [], None

    def __enter__(self) -> OnnxRuntimeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _batched(self, model: onnx.ModelProto, threads: int) -> tuple[onnx.ModelProto, ort.InferenceSession | None]:
        """The graph to run (batch-dynamic when a saved batch of 1 runs a batch of 2 like two single
        runs), with the session that probed it if any; sets whether the graph runs a batch in one call."""
        self.graph_batches = True
        if len(model.graph.input) != 1 or not _has_fixed_batch(model.graph.input[0]) or self.max_batch == 1:
            return model, None
        dynamic = _with_dynamic_batch(model)
        try:
            # Quiet: a graph failing the probe is an expected outcome, not an ORT warning.
            session = self._open(dynamic, threads, log_severity_level=3)
        except ModelError:
            session = None
        if session is not None and _batches_like_singles(session):
            return dynamic, session
        self._log.info("engine_batch_fixed", reason="graph does not run a batch of 2 like two single runs: image by image")
        self.graph_batches = False
        return model, None

    def _open(self, model: onnx.ModelProto, intra_op_threads: int, log_severity_level: int = 2) -> ort.InferenceSession:
        options = _session_options(intra_op_threads=intra_op_threads, **self._options)
        options.log_severity_level = log_severity_level
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise ModelError(f"{self._path}: onnxruntime cannot open the graph: {exc}") from exc
        if len(session.get_inputs()) != 1:
            names = [t.name for t in session.get_inputs()]
            raise ModelError(f"{self._path}: expected one image input, graph has {names}")
        return session


def _session_options(
    intra_op_threads: int, inter_op_threads: int, allow_spinning: bool, graph_optimization: str, parallel: bool
) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = _OPT_LEVELS[graph_optimization]
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    spinning = "1" if allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load_model(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError: all mean "not a usable ONNX file"
        raise ModelError(f"{path}: not a valid ONNX model: {exc}") from exc
    return model


def _without_initializer_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with weights removed from the graph inputs (in place).

    Old exporters (IR < 4, e.g. NanoDet's) list every weight as a graph input too:
    ORT then treats weights as overridable (no constant folding, a warning per
    weight) and the image is no longer the graph's only input.
    """
    weights = {init.name for init in model.graph.initializer}
    if any(value.name in weights for value in model.graph.input):
        kept = [value for value in model.graph.input if value.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(kept)
    return model


def _with_input_size(model: onnx.ModelProto, size_wh: tuple[int, int]) -> onnx.ModelProto:
    """A copy whose image input is (B, C, height, width) and whose outputs' other dimensions are left
    for the graph to compute (they follow the input in graphs such as YOLOX's)."""
    resized = onnx.ModelProto()
    resized.CopyFrom(model)
    dims = resized.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims[2:], (size_wh[1], size_wh[0])):
        dim.dim_value = value
    for output in resized.graph.output:
        for i, dim in enumerate(output.type.tensor_type.shape.dim[1:], start=1):
            dim.dim_param = f"{output.name}_dim{i}"
    del resized.graph.value_info[:]  # shapes recorded for the saved size; ORT re-infers them
    return resized


def _run_shapes(session: ort.InferenceSession, image: TensorSpec, outputs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """`outputs` with the shapes one run of a blank image gives (the batch dimension as reported)."""
    blank = np.zeros((1, *image.shape[1:]), np.float32)
    values = session.run([o.name for o in outputs], {image.name: blank})
    return tuple(TensorSpec(o.name, (o.shape[0], *v.shape[1:]), o.dtype) for o, v in zip(outputs, values))


def _has_fixed_batch(value_info: onnx.ValueInfoProto) -> bool:
    dims = value_info.type.tensor_type.shape.dim
    return bool(dims) and dims[0].HasField("dim_value")


def _with_dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph inputs/outputs have a symbolic 'batch' first dimension."""
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(model)
    for value in [*dynamic.graph.input, *dynamic.graph.output]:
        dim0 = value.type.tensor_type.shape.dim[0]
        dim0.ClearField("dim_value")
        dim0.dim_param = "batch"
    # Intermediate shapes recorded for batch 1 would contradict a batch of 2; ORT re-infers them.
    del dynamic.graph.value_info[:]
    return dynamic


def _batches_like_singles(session: ort.InferenceSession) -> bool:
    """Whether a batch of 2 runs and equals two single runs (a graph may hard-code batch 1 in a Reshape)."""
    spec = session.get_inputs()[0]
    shape = [2, *(d if isinstance(d, int) else 1 for d in spec.shape[1:])]
    # A fixed, non-constant pattern: identical images would hide a batch-mixing graph.
    pair = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 251.0)
    pair[1] = pair[1, :, ::-1]
    try:
        together = session.run(None, {spec.name: pair})
        singles = [session.run(None, {spec.name: pair[i : i + 1]}) for i in range(2)]
    except Exception:  # a graph that cannot run batch 2 is fixed-batch, not broken
        return False
    for i, out in enumerate(together):
        single = np.concatenate([s[i] for s in singles])
        if out.shape != single.shape or not np.allclose(out, single, atol=_BATCH_CHECK_ATOL):
            return False
    return True


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_DTYPES.get(node.type, np.dtype(object)))
