"""Hard negatives for `fire` and `abandoned_object`, built from the real clips on hand.

Each clip is a stretch of real footage (vtest, ABODA before the bag is set down, Le2i)
with one of the look-alikes that make flame-colour and static-foreground methods cry
wolf painted over it: a flashing amber beacon (1-4 Hz, hard on/off), a steady lit orange
sign, a slow global lighting change then lights switched on, a pair of headlights driving
through (stopping on the way), and a Le2i person who fell and lies still long after; and
vtest as a slow camera gives it (5 fps: people walking over flame-coloured gravel, whose
breaks between sparse samples go unseen). None of them shows a fire or an abandoned object.
Clips are written at reduced frame rate (<= 12.5 fps) as MJPG AVI in seconds; they are
generated where they are used, never committed.

    python -m benchmarks.hard_negatives --out DIR [--set default|full]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmarks.data import media_dir

Overlay = Callable[[np.ndarray, float], np.ndarray]  # (BGR uint8 frame, t seconds) -> frame, may be in place


class Lamp:
    """A lit shape drawn over the frame: a body of one colour with a brighter core and a
    glow around it, at a normalised position `xy(t)`; `on(t)` switches it; sensor noise is
    added where it is drawn, as a camera would."""

    def __init__(
        self,
        shape: Callable[[np.ndarray, int], None],
        size_px: tuple[int, int],
        body_bgr: tuple[int, int, int],
        core_bgr: tuple[int, int, int],
        off_bgr: tuple[int, int, int] | None,
        xy: Callable[[float], tuple[float, float]],
        on: Callable[[float], bool] = lambda t: True,
        glow_px: int = 9,
        seed: int = 0,
    ) -> None:
        w, h = size_px
        pad = 2 * glow_px
        canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.uint8)
        shape(canvas[pad : pad + h, pad : pad + w], 255)
        self._alpha = (canvas.astype(np.float32) / 255.0)[..., None]
        core = cv2.erode(canvas, np.ones((3, 3), np.uint8), iterations=max(1, min(w, h) // 6))
        self._core = (cv2.GaussianBlur(core, (0, 0), 1.0).astype(np.float32) / 255.0)[..., None]
        glow = cv2.GaussianBlur(canvas, (0, 0), glow_px).astype(np.float32) / 255.0
        self._glow = glow[..., None] * np.asarray(body_bgr, np.float32) * 0.6
        self._body = np.asarray(body_bgr, np.float32)
        self._core_bgr = np.asarray(core_bgr, np.float32)
        self._off = None if off_bgr is None else np.asarray(off_bgr, np.float32)
        self._xy, self._on = xy, on
        self._rng = np.random.default_rng(seed)

    def __call__(self, frame: np.ndarray, t: float) -> np.ndarray:
        lit = self._on(t)
        if not lit and self._off is None:
            return frame
        fh, fw = frame.shape[:2]
        sh, sw = self._alpha.shape[:2]
        cx, cy = self._xy(t)
        x0, y0 = round(cx * fw) - sw // 2, round(cy * fh) - sh // 2
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + sw, fw), min(y0 + sh, fh)
        if fx0 >= fx1 or fy0 >= fy1:
            return frame
        sl = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
        roi = frame[fy0:fy1, fx0:fx1].astype(np.float32)
        a = self._alpha[sl]
        if lit:
            colour = self._body + self._core[sl] * (self._core_bgr - self._body)
            out = roi * (1 - a) + colour * a + self._glow[sl]
        else:
            out = roi * (1 - a) + self._off * a
        out += self._rng.normal(0.0, 2.5, out.shape).astype(np.float32) * (a > 0)
        frame[fy0:fy1, fx0:fx1] = np.clip(out, 0, 255).astype(np.uint8)
        return frame


def disc(canvas: np.ndarray, value: int) -> None:
    h, w = canvas.shape
    cv2.ellipse(canvas, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, value, -1, cv2.LINE_AA)


def sign_shape(canvas: np.ndarray, value: int) -> None:
    """A lit panel with darker letter strokes across it."""
    h, w = canvas.shape
    canvas[:] = value
    for x in range(w // 8, w - w // 8, max(w // 7, 3)):
        canvas[h // 4 : h - h // 4, x : x + max(w // 20, 1)] = value // 2


def beacon(xy: tuple[float, float], hz: float, size_px: int, seed: int = 0) -> Lamp:
    """A flashing amber beacon: hard on/off at `hz`, half the period on."""
    return Lamp(
        disc, (size_px, size_px), (0, 150, 255), (170, 230, 255), (30, 60, 100),
        lambda t: xy, lambda t: (t * hz) % 1.0 < 0.5, glow_px=max(3, size_px // 2), seed=seed,
    )  # fmt: skip


def lit_sign(xy: tuple[float, float], size_px: tuple[int, int], seed: int = 0) -> Lamp:
    """A steady lit orange sign."""
    return Lamp(sign_shape, size_px, (0, 120, 255), (90, 200, 255), None, lambda t: xy, glow_px=6, seed=seed)


def headlights(y: float, size_px: int, gap: float, seed: int = 0) -> list[Lamp]:
    """Two warm-white headlights driving left to right: in at 2 s, stopping from 7 to 11 s, out at 16 s."""

    def x(t: float) -> float:
        moving = min(max(t - 2.0, 0.0), 5.0) + min(max(t - 11.0, 0.0), 5.0)  # seconds of driving so far
        return -0.1 + moving * 0.12

    return [
        Lamp(disc, (size_px, size_px), (190, 225, 255), (235, 250, 255), None,
             lambda t, dx=dx: (x(t) + dx, y), lambda t: 2.0 <= t <= 16.0, glow_px=size_px, seed=seed + i)
        for i, dx in enumerate((0.0, gap))
    ]  # fmt: skip


def lighting(frame: np.ndarray, t: float) -> np.ndarray:
    """Clouds: the light falls to 55 % from 2 s to 8 s and comes back by 13 s; then warm lights go on at 15 s."""
    dim = 1.0 - 0.45 * _ramp(t, 2.0, 8.0) + 0.45 * _ramp(t, 8.0, 13.0)
    warm = np.array([0.95, 1.08, 1.3], np.float32) if t >= 15.0 else np.ones(3, np.float32)
    return np.clip(frame.astype(np.float32) * (dim * warm), 0, 255).astype(np.uint8)


def _ramp(t: float, a: float, b: float) -> float:
    """0 before a, 1 after b, a smooth step between."""
    u = min(max((t - a) / (b - a), 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * u)


@dataclass
class Recipe:
    """`base` (relative to the media folder) from `start_s` for `duration_s`, sampled at about `fps`,
    each frame passed through `overlays`; `hold_s` more seconds of the last frame (with sensor noise)."""

    name: str
    base: str
    overlays: list[Overlay] = field(default_factory=list)
    start_s: float = 0.0
    duration_s: float = 20.0
    fps: float = 10.0
    hold_s: float = 0.0


def recipes() -> dict[str, list[Recipe]]:
    """The default set (one clip per look-alike, for the test suite: where one exists, the clip of that
    look-alike on which the code before these checks raised a false alarm) and the full set (each look-alike
    on two or three bases, other frequencies and places)."""
    vtest, aboda, coffee, home = (
        "vtest.avi",
        "abandoned/aboda_video4.avi",
        "fall/le2i_coffee01_v03.mp4",
        "fall/le2i_home02_v36.mp4",
    )
    default = [
        Recipe("beacon_aboda_3hz", aboda, [beacon((0.93, 0.52), 3.3, 30, seed=1)], duration_s=18.0),
        Recipe("sign_aboda", aboda, [lit_sign((0.12, 0.12), (64, 22))], duration_s=18.0),
        Recipe("lighting_vtest", vtest, [lighting]),
        Recipe("headlights_vtest", vtest, headlights(0.27, 16, 0.07)),
        Recipe("lying_le2i_coffee01_v03", coffee, duration_s=12.0, hold_s=20.0, fps=12.5),
        Recipe("slow_vtest_5fps", vtest, start_s=20.0, duration_s=30.0, fps=5.0),
    ]
    more = [
        Recipe("beacon_vtest_2hz", vtest, [beacon((0.09, 0.06), 2.0, 28)]),
        Recipe("beacon_le2i_1hz", coffee, [beacon((0.28, 0.18), 1.0, 16, seed=2)], fps=12.5, duration_s=12.0),
        Recipe("beacon_le2i_4hz", home, [beacon((0.6, 0.25), 4.0, 16, seed=3)], fps=12.5, duration_s=8.0, hold_s=8.0),
        Recipe("sign_vtest", vtest, [lit_sign((0.44, 0.12), (90, 26), seed=4)]),
        Recipe("sign_le2i", coffee, [lit_sign((0.62, 0.1), (50, 16), seed=5)], fps=12.5, duration_s=12.0),
        Recipe("lighting_aboda", aboda, [lighting], duration_s=18.0),
        Recipe("lighting_le2i", coffee, [lighting], fps=12.5, duration_s=12.0, hold_s=8.0),
        Recipe("headlights_aboda", aboda, headlights(0.2, 14, 0.09, seed=6), duration_s=18.0),
        Recipe("lying_le2i_home02_v36", home, duration_s=8.0, hold_s=20.0, fps=12.5),
    ]
    return {"default": default, "full": default + more}


def frames(recipe: Recipe, media: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(t seconds from the clip's start, frame) at about `recipe.fps`, overlays applied."""
    cap = cv2.VideoCapture(str(media / recipe.base))
    if not cap.isOpened():
        raise FileNotFoundError(
            f"{media / recipe.base}: cannot open the base clip; point EDGE_AGENT_MEDIA_DIR at the shared media"
        )
    src_fps = cap.get(cv2.CAP_PROP_FPS)
    step = max(1, round(src_fps / recipe.fps))
    cap.set(cv2.CAP_PROP_POS_FRAMES, round(recipe.start_s * src_fps))
    n_base, n_hold = (round(s * src_fps / step) for s in (recipe.duration_s, recipe.hold_s))
    rng = np.random.default_rng(7)
    last = None
    for k in range(n_base + n_hold):
        image = None
        if k < n_base:
            ok, image = cap.read()
            for _ in range(step - 1):
                cap.grab()
            last = image if ok else last
            image = image if ok else None
        if image is None:  # past the base's end: its last frame, with fresh sensor noise
            if last is None:
                break
            image = np.clip(last + rng.normal(0.0, 2.0, last.shape), 0, 255).astype(np.uint8)
        t = k * step / src_fps
        for overlay in recipe.overlays:
            image = overlay(image.copy(), t)
        yield t, image
    cap.release()


def write(recipe: Recipe, out_dir: Path, media: Path | None = None) -> Path:
    """Write one clip; returns its path."""
    media = media or media_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{recipe.name}.avi"
    writer = None
    cap_fps = cv2.VideoCapture(str(media / recipe.base)).get(cv2.CAP_PROP_FPS)
    fps = cap_fps / max(1, round(cap_fps / recipe.fps))
    for _, image in frames(recipe, media):
        if writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        writer.write(image)
    if writer is None:
        raise ValueError(f"{recipe.name}: the base clip {recipe.base} gave no frame")
    writer.release()
    return path


def write_set(out_dir: Path, which: str = "default") -> list[Path]:
    return [write(r, out_dir) for r in recipes()[which]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder to write the clips into")
    ap.add_argument("--set", choices=("default", "full"), default="full", help="which clips (default: full)")
    args = ap.parse_args(argv)
    for path in write_set(args.out, args.set):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
