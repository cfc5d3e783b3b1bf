"""Backend names -> "module:Class"; modules are imported only when their backend is opened,
so heavy optional imports (tensorrt, cuda) stay inside their backend."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from engines.base import Engine

BACKENDS: dict[str, str] = {
    "onnxruntime": "engines.onnxruntime_engine:OnnxRuntimeEngine",
    "tensorrt": "engines.tensorrt_engine:TensorRTEngine",
}


def open_engine(name: str, model_path: Path, **options: Any) -> Engine:
    """Open `model_path` with backend `name`; options go to the backend's constructor."""
    target = BACKENDS.get(name)
    if target is None:
        raise ValueError(f"unknown inference backend {name!r}, known: {sorted(BACKENDS)}")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"backend {name!r} is not available here ({module_name}): {exc}") from exc
    return getattr(module, class_name)(model_path, **options)
