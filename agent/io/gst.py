"""GStreamer decode pipelines for RTSP cameras on Jetson (NVDEC hardware decode).

OpenCV opens a camera either with FFmpeg (software decode, any box) or with a
GStreamer pipeline string ending in `appsink` (`cv2.VideoCapture(pipeline,
cv2.CAP_GSTREAMER)`). On a Jetson the pipeline hands the H.264/H.265 stream to
`nvv4l2decoder`, which frees the CPU cores the detector and trackers need.

Everything here is pure except `opencv_has_gstreamer` and `is_jetson`, which
read OpenCV's build information and one file.

The pipeline string carries the camera's credentials (percent-encoded in
the location): never log it; log `CameraConfig.redacted_url` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import cv2

from agent.settings.camera import DEFAULT_LATENCY_MS, CameraConfig, Codec

Backend = Literal["gstreamer", "ffmpeg"]

# URL characters kept as they are: RFC 3986 reserved and unreserved ones plus `%`
# (existing escapes stay); everything else is percent-encoded.
_URL_SAFE = "/?#[]@!$&'()*+,;=:%-._~"
# FFmpeg/OpenCV four-character codes that name each codec (CAP_PROP_FOURCC, lower-cased).
_FOURCC_CODECS: dict[str, Codec] = {
    "h264": "h264", "avc1": "h264", "x264": "h264",
    "h265": "h265", "hevc": "h265", "hev1": "h265", "hvc1": "h265",
}  # fmt: skip
# The parts between the source and the decoder, per codec.
_DEPAY_PARSE: dict[Codec, str] = {
    "h264": "rtph264depay ! h264parse",
    "h265": "rtph265depay ! h265parse",
}
# After videoconvert (BGRx -> BGR on the CPU): one buffer, dropped when late: a live camera
# must never queue stale frames.
_TO_APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


def codec_from_fourcc(fourcc: str) -> Codec | None:
    """'avc1', 'H264', 'hevc'... -> 'h264' | 'h265'; None for anything NVDEC is not given here."""
    return _FOURCC_CODECS.get(fourcc.strip().lower())


def quote_value(value: str) -> str:
    """A gst-launch property value as one double-quoted token.

    Inside double quotes gst_parse_launch keeps `!`, spaces and `name=` as
    part of the value. How it unescapes backslashes differs between
    GStreamer versions (1.22 keeps `\\` as two characters, so a value ending
    in a backslash swallows the closing quote), so this refuses `"`, `\\` and
    control characters instead of escaping them: callers percent-encode.
    """
    bad = sorted({ch for ch in value if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F})
    if bad:
        raise ValueError(f"characters {bad!r} are not allowed in a pipeline value: percent-encode them")
    return f'"{value}"'


def rtspsrc(url: str, latency_ms: int = DEFAULT_LATENCY_MS) -> str:
    """The `rtspsrc ...` element for `url`, over TCP.

    Every character of the URL that could end or escape the quoted value
    (`"`, `\\`, spaces, controls, non-ASCII) is percent-encoded; credentials
    are re-encoded whole. rtspsrc's URL parser (gst_rtsp_url_parse) decodes
    the user and password again and sends the path as written, so the camera
    sees exactly what the URL said. Raises ValueError for a non-RTSP URL or a
    bad latency.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
        raise ValueError("rtspsrc needs an rtsp:// or rtsps:// URL with a host")
    if not 0 <= latency_ms <= 60_000:
        raise ValueError(f"latency_ms must be within 0..60000, got {latency_ms}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username is not None:
        userinfo = quote(unquote(parts.username), safe="")
        if parts.password is not None:
            userinfo += ":" + quote(unquote(parts.password), safe="")
        netloc = f"{userinfo}@{netloc}"
    location = urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, _URL_SAFE),
            quote(parts.query, _URL_SAFE),
            quote(parts.fragment, _URL_SAFE),
        )
    )
    # TCP (interleaved): RTP over UDP loses packets on busy site networks and
    # every lost packet smears the picture until the next key frame.
    return f"rtspsrc location={quote_value(location)} latency={latency_ms} protocols=tcp"


def converter_caps(max_width: int | None) -> str:
    """The caps nvvidconv writes: BGRx (the VIC cannot write 3-byte BGR), at most `max_width`
    pixels wide with the camera's aspect ratio kept (None: full resolution).

    The width is a range and the pixel aspect ratio fixed, so the converter's caps fixation
    (gst_nvvconv_fixate_caps in L4T's gstnvvconv.c, the same rule as GStreamer's videoscale)
    picks the width nearest the camera's within the range and the height that keeps the
    display aspect ratio: 1920x1080 -> 1280x720 at 1280, 640x480 unchanged.
    """
    if max_width is None:
        return "video/x-raw,format=BGRx"
    return f"video/x-raw,width=[1,{max_width}],pixel-aspect-ratio=1/1,format=BGRx"


def jetson_rtsp_pipeline(
    url: str, codec: Codec = "h264", latency_ms: int = DEFAULT_LATENCY_MS, max_width: int | None = None
) -> str:
    """The full gst-launch pipeline: RTSP -> depay -> parse -> NVDEC -> scaled BGRx by the
    hardware converter -> BGR appsink. NVDEC decodes into NVMM memory; nvvidconv scales and
    converts there (the VIC), so the CPU's videoconvert only drops the pad byte of the
    already smaller frame."""
    if codec not in _DEPAY_PARSE:
        raise ValueError(f"codec must be one of {sorted(_DEPAY_PARSE)}, got {codec!r}")
    if max_width is not None and max_width < 1:
        raise ValueError(f"max_width must be >= 1, got {max_width}")
    decode = f"nvv4l2decoder ! nvvidconv ! {converter_caps(max_width)}"
    return f"{rtspsrc(url, latency_ms)} ! {_DEPAY_PARSE[codec]} ! {decode} ! {_TO_APPSINK}"


def opencv_has_gstreamer(build_information: str | None = None) -> bool:
    """True when OpenCV was built with GStreamer (pip wheels are not; JetPack's OpenCV is)."""
    info = cv2.getBuildInformation() if build_information is None else build_information
    for line in info.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def is_jetson(root: Path = Path("/")) -> bool:
    """True on an NVIDIA Jetson (L4T writes /etc/nv_tegra_release), as deploy/install.sh decides."""
    return (root / "etc" / "nv_tegra_release").is_file()


def choose_backend(
    camera: CameraConfig,
    on_jetson: bool,
    has_gst: bool,
    codec: Codec = "h264",
    latency_ms: int = DEFAULT_LATENCY_MS,
) -> tuple[Backend, str]:
    """("gstreamer", pipeline) for an RTSP camera on a Jetson whose OpenCV has GStreamer,
    else ("ffmpeg", url) for OpenCV's FFmpeg backend (files, x86, pip OpenCV).

    `codec` is the camera's `codec:` (provision writes what its probe found, through
    `codec_from_fourcc`); a wrong one fails at open, where the reader's retry and the
    doctor report it.
    """
    if on_jetson and has_gst and not camera.is_file:
        return "gstreamer", jetson_rtsp_pipeline(camera.url, codec, latency_ms, camera.decode_max_width)
    return "ffmpeg", camera.url
