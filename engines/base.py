"""The small interface every inference backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, shape and dtype of a graph tensor; -1 marks a dynamic dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


class Engine(Protocol):
    """Runs a model graph on a batch of preprocessed tensors.

    `infer` takes float32 (B, 3, H, W) and returns the graph's outputs by name,
    each with the batch dimension first. Engines own their threads and device
    memory and release them in `close`.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
