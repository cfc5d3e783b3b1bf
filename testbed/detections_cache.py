"""The real model's detections of a clip, computed once and read back after: the model is the
slow part of replaying a clip, and tests and evaluations replay the same clips with other
rule settings. Cached under a key of the clip's bytes, the model's SHA-256, the confidence
and the classes kept, so a changed clip, model or setting never reads stale detections."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.atomic import write_atomic
from engines.types import Detections


def cache_path(cache_dir: Path, clip: Path, model_sha256: str, confidence: float, classes: list[str] | None) -> Path:
    """Where the detections of `clip` with this model and these settings are kept (an .npz)."""
    h = hashlib.sha256()
    with open(clip, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(f"|{model_sha256}|{confidence:.4f}|{','.join(classes or ['*'])}".encode())
    return cache_dir / f"{clip.stem}-{h.hexdigest()[:16]}.npz"


class CachedDetector:
    """A detector for one clip replayed in order without dropping frames (`replay: fast`):
    frame k gets the k-th stored detections; frames past what is stored run the real model,
    and `save` stores a complete run."""

    def __init__(self, detector, path: Path) -> None:
        self._detector = detector
        self._path = path
        self._stored = _load(path) if path.exists() else []
        self._seen: list[Detections] = []
        self.last_timings_s: dict[str, float] = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}

    def __getattr__(self, name: str):
        """Everything else (manifest, nms_iou) is the real detector's."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._detector, name)

    @property
    def hit(self) -> bool:
        """Whether every frame so far came from the cache."""
        return 0 < len(self._seen) <= len(self._stored)

    def detect(self, images: Sequence[np.ndarray], sizes_wh: list | None = None) -> list[Detections]:
        start = len(self._seen)
        if start + len(images) <= len(self._stored):
            out = self._stored[start : start + len(images)]
            self.last_timings_s = dict.fromkeys(self.last_timings_s, 0.0)
        else:
            out = self._detector.detect(images, sizes_wh)
            self.last_timings_s = self._detector.last_timings_s
        self._seen.extend(out)
        return out

    def close(self) -> None:
        """The real detector is its owner's to close."""

    def save(self) -> None:
        if len(self._seen) <= len(self._stored):
            return
        buf = io.BytesIO()
        np.savez(
            buf,
            counts=np.array([len(d) for d in self._seen], np.int64),
            xyxy=np.concatenate([d.xyxy for d in self._seen]).reshape(-1, 4).astype(np.float32),
            confidence=np.concatenate([d.confidence for d in self._seen]).astype(np.float32),
            class_id=np.concatenate([d.class_id for d in self._seen]).astype(np.int32),
        )
        write_atomic(self._path, buf.getvalue())


def _load(path: Path) -> list[Detections]:
    with np.load(path) as z:  # each z[key] reads and decompresses its array again: read each once
        counts, xyxy, confidence, class_id = z["counts"], z["xyxy"], z["confidence"], z["class_id"]
    ends = np.cumsum(counts)
    return [Detections(xyxy[a:b], confidence[a:b], class_id[a:b]) for a, b in zip(ends - counts, ends)]
