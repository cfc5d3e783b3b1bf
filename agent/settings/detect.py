"""When a camera's frames go through the detector: a camera config's `detect` block.

The defaults detect every frame of the whole image, as the agent always did.
A box with many cameras sets `fps` (and `motion`, and `crop_to_zones`) so that
the detector sees only what must be seen; the tracker predicts the boxes of
the frames between, so every rule still sees every frame. A camera whose rules
need fresh boxes (a rule class with `needs_fresh_boxes = True`, e.g.
person_down's shape) is detected at every frame whatever these say.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DetectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float | None = Field(
        None, gt=0.0, le=120.0,
        description="detections per second for this camera, apart from its frame rate (10 fps with 5: every "
        "2nd frame); the tracker predicts the boxes of the frames between; absent: every frame. Under load the "
        "busiest cameras are detected less often than this before any frame is dropped",
    )
    motion: bool = Field(
        False,
        description="skip the detector while nothing changed since it last looked (a frame difference on the "
        "analysis downscale, inside the detected region); still scenes are re-checked every still_recheck_s",
    )
    motion_pixel_delta: int = Field(
        15, ge=1, le=255, description="grey-level change (0..255, on the downscaled frame) that counts a pixel as changed"
    )
    motion_min_area: float = Field(
        0.002, gt=0.0, le=1.0,
        description="share of the detected region's downscaled pixels that must change to call for the detector",
    )
    still_recheck_s: float = Field(
        0.5, gt=0.0, le=60.0,
        description="with motion gating: a still scene that has tracks is detected again after this long, "
        "so people standing still keep their tracks (it must be below the tracker's lost_timeout_s)",
    )
    empty_recheck_s: float = Field(
        5.0, gt=0.0, le=600.0,
        description="with motion gating: a still scene without tracks is detected again after this long",
    )
    input_size_wh: tuple[int, int] | None = Field(
        None,
        description="the model's input width and height for this camera, multiples of 32 (e.g. [320, 320]: yolox_nano "
        "about 1.5x faster than at 416 for fewer small people found; [416, 320] for a 4:3 camera: 416's scale without the "
        "letterbox's padding rows, about 1.25x faster); the same model file runs at it (onnxruntime "
        "backend; graphs whose shapes follow their input, as YOLOX's); absent: the model manifest's size",
    )
    crop_to_zones: bool = Field(
        False,
        description="detect only on the part of the frame that covers the camera's zones and lines "
        "(plus crop_margin), letterboxed to the model's input, when that enlarges people by 1.25x or more: "
        "sharper for small people there (the model's input, so its cost, is the same)",
    )
    crop_margin: float = Field(
        0.15, ge=0.0, le=1.0,
        description="share of the frame's width and height added on every side of the zones' bounding box; "
        "it must hold the body of a person whose feet are at the top edge of a zone",
    )

    @field_validator("input_size_wh")
    @classmethod
    def _grid_multiple(cls, size_wh: tuple[int, int] | None) -> tuple[int, int] | None:
        if size_wh is not None and not all(32 <= side <= 1280 and side % 32 == 0 for side in size_wh):
            raise ValueError(f"{list(size_wh)}: each side must be a multiple of 32 between 32 and 1280 (e.g. [320, 320])")
        return size_wh
