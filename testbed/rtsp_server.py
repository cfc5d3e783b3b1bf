"""Serve a video clip as a real RTSP camera on loopback (GStreamer's RTSP server).

Run with Debian's interpreter, the only one that sees the `gi` bindings:

    /usr/bin/python3 testbed/rtsp_server.py --clip vtest.avi --port 8554 --name cam

It prints `READY rtsp://127.0.0.1:<port>/<name>` once the socket listens and
exits 0 on SIGTERM or SIGINT. The clip is decoded, re-encoded as H.264
(zero-latency, a key frame every `--key-int` frames so a client that
(re)connects decodes within a second) and paced at its own frame rate by the
pipeline clock, like a live camera. Each client gets its own pipeline and the
clip plays once (vtest.avi: 795 frames, 80 s), then the stream ends; a client
that reconnects gets it from the start (the agent does, after `camera.offline`).

`--user U --password P` asks for them as a camera does (`--auth digest`, most
cameras' default, or `basic`); without, anyone may watch.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def launch_line(clip: Path, key_int: int) -> str:
    """The media pipeline for one client, in gst-launch syntax."""
    location = str(clip.resolve()).replace('"', '\\"')
    # decodebin exposes every stream; only the video one links to videoconvert,
    # an audio track stays unlinked and is ignored. threads=1: zerolatency's sliced
    # threads cut every frame into several slices, and key frames then reached
    # the client with their lower part smeared (measured: every GOP damaged);
    # one slice per frame is what typical IP cameras send.
    return (
        f'( filesrc location="{location}" ! decodebin ! videoconvert ! video/x-raw,format=I420 '
        f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max={key_int} "
        f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def require_login(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, user: str,
                  password: str, method: str) -> None:
    """Only `user` with `password` may watch, by the HTTP-style `method` (digest or basic)."""
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth = GstRtspServer.RTSPAuth()
    if method == "digest":
        auth.add_digest(user, password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    role = "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    permissions.add_role_from_structure(Gst.Structure.from_string(role)[0])
    factory.set_permissions(permissions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True, help="video file to serve")
    parser.add_argument("--port", type=int, default=8554, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--name", default="cam", help="mount path, served at /<name>")
    parser.add_argument("--key-int", type=int, default=10, help="frames between H.264 key frames")
    parser.add_argument("--user", help="with --password: the login a client must give")
    parser.add_argument("--password", help="with --user")
    parser.add_argument("--auth", choices=["digest", "basic"], default="digest", help="how the login is asked")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if not args.clip.is_file():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 2

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.clip, args.key_int))
    factory.set_shared(False)
    if args.user is not None:
        require_login(server, factory, args.user, args.password, args.auth)
    server.get_mount_points().add_factory(f"/{args.name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}/{args.name}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
