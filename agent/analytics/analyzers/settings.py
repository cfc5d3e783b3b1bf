"""Settings of the frame-level analyzers (no OpenCV here: the zones document imports them)."""

from __future__ import annotations

from pydantic import Field

from agent.analytics.base import Settings


class FireAnalyzerSettings(Settings):
    red_min: int = Field(150, ge=0, le=255, description="minimum red value (0..255) of a flame pixel")
    red_minus_blue_min: int = Field(
        60, ge=0, le=255, description="red must exceed blue by this much: rejects white and grey highlights"
    )
    flicker_min: float = Field(
        15.0,
        ge=0.0,
        le=255.0,
        description="mean absolute change of brightness between samples (0..255) that counts as flicker",
    )
    flicker_memory_s: float = Field(
        0.5, gt=0.0, le=30.0, description="time constant of the flicker average: how long a pixel stays flickering"
    )
    persistence_s: float = Field(
        0.5, gt=0.0, le=30.0, description="time constant of the share of samples in which a pixel looked like fire"
    )
    persistence_min: float = Field(
        0.5, gt=0.0, le=1.0, description="share of recent samples a pixel must look like fire in to count"
    )
    window_s: float = Field(
        2.0, ge=0.5, le=30.0, description="how far back each candidate region's flame colour is measured (whether it "
        "blinks, moves its boundary, grows): at least a few periods of a slow beacon"
    )


class StaticAnalyzerSettings(Settings):
    background_s: float = Field(
        300.0, ge=10.0, le=7200.0, description="time constant of the long-term background; a still object fades into it"
    )
    warmup_s: float = Field(
        5.0, ge=0.0, le=600.0, description="the long-term background is a plain mean of the samples for this long"
    )
    recent_s: float = Field(2.0, gt=0.0, le=60.0, description="time constant of the short-term background")
    diff_min: float = Field(25.0, gt=0.0, le=255.0, description="grey difference (0..255) that makes a pixel foreground")
    still_s: float = Field(3.0, ge=0.0, le=600.0, description="time a pixel must stay new and still to be static")
    min_area: float = Field(
        0.0008, gt=0.0, le=1.0, description="smallest static region, share of the frame (a bag at 10 m is about 0.005)"
    )
    max_area: float = Field(
        0.05, gt=0.0, le=1.0, description="largest static region, share of the frame; bigger ones are lighting changes"
    )
    illumination_px: float = Field(
        12.0, gt=0.0, le=200.0, description="scale (analysis pixels) of the neighbourhood whose mean brightness each "
        "pixel is compared to: lighting that varies more slowly across the frame than this (clouds, lights switched "
        "on) cancels"
    )


class SilhouetteAnalyzerSettings(Settings):
    width_px: int = Field(96, ge=32, le=640, description="width of the grey frame background subtraction runs on")
    history_s: float = Field(
        100.0, ge=1.0, le=3600.0, description="memory of the background model; a still person fades into it after "
        "about a tenth of this"
    )
    warmup_s: float = Field(2.0, ge=0.0, le=600.0, description="the background is learnt fast for this long after start")
    var_threshold: float = Field(
        25.0, gt=0.0, le=1000.0, description="squared distance from the background, in the background's standard "
        "deviations, that makes a pixel foreground (MOG2's varThreshold)"
    )


class CrowdAnalyzerSettings(Settings):
    edge_low: int = Field(40, ge=1, le=1000, description="Canny's lower gradient threshold (grey levels) of a crowd edge")
    edge_high: int = Field(120, ge=1, le=1000, description="Canny's upper gradient threshold (grey levels) of a crowd edge")


class AnalysisSettings(Settings):
    width_px: int = Field(
        192, ge=64, le=1920, description="width of the frame the frame-level analyzers see, downscaled once per frame"
    )
    fire_fps: float = Field(
        10.0, gt=0.0, le=60.0, description="analyses per second of the fire analyzer (flicker needs >= 4; "
        "10 halves the onset delay's sampling jitter for ~1.5 ms per analysis at the default width)"
    )
    static_fps: float = Field(2.0, gt=0.0, le=60.0, description="analyses per second of the static-foreground analyzer")
    silhouette_fps: float = Field(
        10.0, gt=0.0, le=60.0, description="analyses per second of the silhouette analyzer (person down)"
    )
    crowd_fps: float = Field(
        10.0, gt=0.0, le=60.0, description="analyses per second of the crowd-edge analyzer (crowded zones; edges "
        "are read with the boxes of the same frame, so keep it at least the camera's detect rate; ~0.2 ms each)"
    )
    fire: FireAnalyzerSettings = Field(FireAnalyzerSettings(), description="fire colour and flicker settings")
    static: StaticAnalyzerSettings = Field(StaticAnalyzerSettings(), description="static foreground settings")
    silhouette: SilhouetteAnalyzerSettings = Field(
        SilhouetteAnalyzerSettings(), description="background subtraction settings (person down)"
    )
    crowd: CrowdAnalyzerSettings = Field(CrowdAnalyzerSettings(), description="crowd-edge settings (crowded zones)")
