"""The ground plane: four image points with metres -> homography, areas, distances; the zones document's
calibration and its checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from agent.core.ground import GroundPlane
from agent.settings.zones import ZonesDoc

# a camera looking down a 10 m x 20 m floor: the far edge (20 m away) is narrower on screen
IMAGE = [(0.4, 0.5), (0.6, 0.5), (0.9, 0.9), (0.1, 0.9)]
GROUND = [(0.0, 20.0), (10.0, 20.0), (10.0, 0.0), (0.0, 0.0)]


def test_maps_the_four_points_and_gives_areas_and_distances():
    plane = GroundPlane(np.array(IMAGE), np.array(GROUND))
    np.testing.assert_allclose(plane.to_m(np.array(IMAGE)), GROUND, atol=1e-9)
    assert plane.area_m2(np.array(IMAGE)) == pytest.approx(200.0)
    # the near half of the floor in metres is not the lower half of the screen: perspective
    near = np.array([(0.1, 0.9), (0.9, 0.9), *plane_points(plane, [(10.0, 10.0), (0.0, 10.0)])])
    assert plane.area_m2(near) == pytest.approx(100.0)
    assert plane.distance_m(np.array([IMAGE[3]]), np.array([IMAGE[2]]))[0] == pytest.approx(10.0)


def plane_points(plane: GroundPlane, metres):
    """Image points of ground positions (the inverse homography)."""
    inv = np.linalg.inv(plane.h)
    q = np.c_[np.asarray(metres, float), np.ones(len(metres))] @ inv.T
    return [tuple(r) for r in q[:, :2] / q[:, 2:3]]


def test_points_above_the_horizon_have_no_area():
    plane = GroundPlane(np.array(IMAGE), np.array(GROUND))
    assert plane.on_ground(np.array([(0.5, 0.8)])).all()
    assert not plane.on_ground(np.array([(0.5, 0.05)])).any()  # the sky
    with pytest.raises(ValueError, match="horizon"):
        plane.area_m2(np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]))


def test_three_points_in_a_line_are_refused():
    with pytest.raises(ValueError, match="in a line"):
        GroundPlane(np.array([(0.1, 0.5), (0.5, 0.5), (0.9, 0.5), (0.5, 0.9)]), np.array(GROUND))


def doc(polygon, ground=None):
    return {
        "zones": [{"id": "z", "camera": "cam", "polygon": polygon, "crowd_density": {}}],
        "ground": ground if ground is not None else [{"camera": "cam", "image_points": IMAGE, "ground_m": GROUND}],
    }


def test_zones_document_calibration_gives_the_zone_its_area_in_m2():
    zones = ZonesDoc.model_validate(doc(IMAGE))
    assert zones.ground_plane("cam").area_m2(np.array(IMAGE)) == pytest.approx(200.0)
    assert zones.ground_plane("other") is None


@pytest.mark.parametrize(
    "bad, message",
    [
        (doc([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]), "above the horizon"),
        (doc(IMAGE, [{"camera": "cam", "image_points": IMAGE[:3], "ground_m": GROUND}]), "image_points"),
        (
            doc(IMAGE, [{"camera": "cam", "image_points": IMAGE, "ground_m": [(0, 0), (1, 0), (2, 0), (0, 5)]}]),
            "in a line",
        ),
        (doc(IMAGE, [{"camera": "cam", "image_points": IMAGE, "ground_m": GROUND}] * 2), "one calibration per camera"),
    ],
)
def test_a_bad_calibration_is_an_error_naming_it(bad, message):
    with pytest.raises(ValidationError, match=message):
        ZonesDoc.model_validate(bad)


def test_the_zone_editor_sets_a_calibration_and_keeps_it_when_a_save_does_not_send_one():
    from agent.io.zone_editor import ZoneEditor

    state = {"doc": ZonesDoc.model_validate({"zones": [{"id": "z", "camera": "cam", "polygon": IMAGE}]})}

    def save(doc: ZonesDoc) -> int:
        state["doc"] = doc
        return doc.version

    editor = ZoneEditor(snapshot=lambda c: None, current_zones=lambda: state["doc"], save_zones=save,
                        camera_ids=lambda: ["cam"], audit=lambda *a, **k: None)  # fmt: skip
    zones = [{"id": "z", "camera": "cam", "polygon": IMAGE, "crowd_density": {}}]
    ground = [{"camera": "cam", "image_points": IMAGE, "ground_m": GROUND}]
    status, _ = editor.save({"base_version": 1, "doc": {"zones": zones, "lines": [], "ground": ground}})
    assert status == 200 and state["doc"].ground_plane("cam") is not None
    status, _ = editor.save({"base_version": 2, "doc": {"zones": zones, "lines": []}})
    assert status == 200 and state["doc"].ground_plane("cam") is not None  # kept
    sky = [{"camera": "cam", "image_points": IMAGE, "ground_m": GROUND}]
    high = [{"id": "z", "camera": "cam", "polygon": [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]}]
    status, body = editor.save({"base_version": 3, "doc": {"zones": high, "lines": [], "ground": sky}})
    assert status == 400 and "horizon" in body["error"] and state["doc"].version == 3  # nothing applied
