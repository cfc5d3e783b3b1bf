"""One camera's settings: where its frames come from and how they are read (a config's `cameras` entry).

A schema only: the reader (agent/io/sources.py) and the GStreamer pipelines (agent/io/gst.py) take it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.settings import paths
from agent.settings.detect import DetectSettings

Codec = Literal["h264", "h265"]
DEFAULT_LATENCY_MS = 200
_RTSP_SCHEMES = ("rtsp", "rtsps")


class CameraConfig(BaseModel):
    """One camera: an RTSP URL or a video file replayed as a camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Camera id, unique on the device; used in topics and logs."
    )
    url: str = Field(
        description=(
            "rtsp:// or rtsps:// URL of a live camera, or a video file (a path or a file:// URL). "
            "A relative path is resolved against the config file's folder (else the working directory) "
            "and stored absolute."
        )
    )
    replay: Literal["realtime", "fast"] = Field(
        "realtime",
        description=(
            "File sources only: 'realtime' paces frames at the clip's own timestamps and drops the oldest frame "
            "when the pipeline lags, like a live camera; 'fast' delivers frames as fast as the pipeline takes them "
            "and blocks instead of dropping, so a file run is deterministic."
        ),
    )
    loop: bool = Field(False, description="File sources only: restart the clip at its end instead of ending.")
    queue_size: int = Field(2, ge=1, le=1000, description="Frames buffered between the reader and the pipeline.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First retry delay after a failure, in seconds.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Cap of the exponential retry delay, in seconds.")
    open_timeout_s: float = Field(10.0, gt=0, description="RTSP: give up opening the stream after this many seconds.")
    read_timeout_s: float = Field(
        5.0, gt=0, description="RTSP: declare the camera offline after this many seconds without a frame."
    )
    codec: Codec = Field(
        "h264", description="RTSP on a Jetson: the stream's codec, for the hardware decoder (provision probes it)."
    )
    latency_ms: int = Field(
        200, ge=0, le=5000, description="RTSP on a Jetson: GStreamer's jitter buffer before decoding, in ms."
    )
    decode_max_width: int | None = Field(
        1280,
        ge=64,
        le=8192,
        description="RTSP on a Jetson: the hardware converter scales frames down to at most this width "
        "(aspect ratio kept) before they reach the CPU; null: full resolution.",
    )
    detect: DetectSettings = Field(
        DetectSettings(),
        description="which frames go through the detector (rate, motion gating, crop to the zones); "
        "default: every frame, whole image",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in _RTSP_SCHEMES:
            if any(c.isspace() for c in url):  # never echoed: it may be part of a password
                raise ValueError("the RTSP URL holds a space: write it %20 (in a password too)")
            if not parts.hostname:
                raise ValueError(f"RTSP URL has no host: {_echo(url)}")
            try:
                port = parts.port
            except ValueError:  # not a number, or above 65535: never echoed, it may hold part of a password
                port = 0
            if port == 0:
                raise ValueError(f"the RTSP URL's port is not a number 1..65535 ({PERCENT_ENCODING})")
            return url
        if scheme == "file":
            path = Path(url2pathname(parts.path))
        elif scheme == "":
            path = Path(url).expanduser()
        else:
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}: use rtsp://, rtsps://, file:// or a file path")
        path = paths.resolve(path)
        if not path.is_file():
            raise ValueError(f"video file not found: {_echo(str(path))}")
        return str(path.resolve())

    @model_validator(mode="after")
    def _check_modes(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({self.reconnect_max_s}) < reconnect_min_s ({self.reconnect_min_s})")
        if not self.is_file and (self.replay != "realtime" or self.loop):
            raise ValueError("replay='fast' and loop apply to file sources only")
        return self

    @property
    def is_file(self) -> bool:
        return urlsplit(self.url).scheme.lower() not in _RTSP_SCHEMES

    @property
    def redacted_url(self) -> str:
        """The URL without its password, safe for logs and status."""
        return redact_urls(self.url)


PERCENT_ENCODING = "a password holding # / ? is written %23 %2F %3F"

# user:password@ after a scheme, in a URL or anywhere in free text (a native library's log line). The
# password runs to the last @ before a space: cameras' passwords often hold @ (Admin@123), # or /
# unencoded (urlsplit would cut those short); a path holding @ is hidden too, which costs nothing.
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^\s:/@]*):\S*@")
# the login some cameras take in the path or query (/user=admin&password=...&channel=1, and with _ between:
# /user=admin_password=..._channel=1); what follows it in the segment is hidden too, which costs nothing
_PASSWORD_PARAMETER = re.compile(r"(?i)(?P<key>[a-z_]*(?:password|passwd|pwd|pass))=[^&\s]*")


def redact_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***: safe for logs and status."""
    return _PASSWORD_PARAMETER.sub(r"\g<key>=***", _CREDENTIALS.sub(r"\g<head>:***@", text))


def _echo(url: str) -> str:
    """A url or path that the config refuses, for its message: not at all if it holds an @ (a mistyped URL's
    login, `rtsp:/admin:p/w@host`, has no `//` for redact_urls to see, and a password may hold / or a space)."""
    return "(not shown: it holds an @, as a login does)" if "@" in url else redact_urls(url)
