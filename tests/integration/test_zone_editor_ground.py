"""The zone editor sets a camera's ground calibration on its real frame: four clicks on the floor and their
metres, saved with the zones (the editor's page, its agent side and fixtures: test_zone_editor.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_zone_editor import agent, editor, page  # noqa: F401 (the fixtures)
from tests.support.browser import click_canvas

pytestmark = pytest.mark.integration

FLOOR = [(0.3, 0.5), (0.7, 0.5), (0.9, 0.95), (0.1, 0.95)]


def test_four_clicks_and_their_metres_calibrate_the_camera(page, agent) -> None:  # noqa: F811
    page.check("#tool-ground")
    click_canvas(page, *FLOOR[:3])
    page.fill("#ground-m", "0,12; 8,12; 8,0; 0,0")
    page.click("#set-ground")
    page.wait_for_selector("#message.error >> text=four points")  # three clicks are not a calibration
    click_canvas(page, FLOOR[3])
    page.click("#set-ground")
    page.wait_for_selector("#message.ok >> text=ground calibration set")
    page.click("#save")
    page.wait_for_selector("#message.ok >> text=saved: zones version 2")
    (doc,) = agent.saved
    plane = doc.ground_plane("plaza")
    assert plane is not None and doc.ground_plane("gate") is None
    np.testing.assert_allclose(plane.to_m(np.array(FLOOR)), [(0, 12), (8, 12), (8, 0), (0, 0)], atol=0.05)
