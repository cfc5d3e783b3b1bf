"""The silhouette analyzer on synthetic grey frames: something new is foreground where it is,
stays so while it lies still for a while, and fades into the background after about a
tenth of `history_s`."""

import numpy as np

from agent.analytics.analyzers.settings import SilhouetteAnalyzerSettings
from agent.analytics.analyzers.silhouette import SilhouetteAnalyzer

NS_PER_FRAME = 100_000_000  # 10 analyses per second


def scene(rng, body: bool) -> np.ndarray:
    """A 192 x 144 grey room with sensor noise; `body`: a dark shape on the floor."""
    grey = np.clip(rng.normal(150, 2, (144, 192)), 0, 255).astype(np.uint8)
    if body:
        grey[100:120, 60:130] = 40
    return grey


def test_a_new_still_shape_is_foreground_then_fades():
    rng = np.random.default_rng(0)
    a = SilhouetteAnalyzer(SilhouetteAnalyzerSettings(history_s=20.0))
    t = 0
    for _ in range(50):  # 5 s of empty room: past the warm-up
        a.observe_grey(scene(rng, False), t)
        t += NS_PER_FRAME
    assert a.mask is not None and a.mask.shape == (72, 96) and not a.mask.any()
    for _ in range(10):  # 1 s after the body appears
        a.observe_grey(scene(rng, True), t)
        t += NS_PER_FRAME
    ys, xs = np.nonzero(a.mask)
    assert a.mask[50:60, 30:65].mean() > 0.9  # the body, at half the 192 px frame
    assert ys.min() >= 48 and ys.max() < 62 and xs.min() >= 28 and xs.max() < 67  # and only there
    for _ in range(60):  # 6 s more: three tenths of history_s, long gone into the background
        a.observe_grey(scene(rng, True), t)
        t += NS_PER_FRAME
    assert not a.mask.any()
