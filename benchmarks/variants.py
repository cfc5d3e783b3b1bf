"""The real clips as other cameras would give them, to check the analytics' defaults on footage they
were not chosen on: at half the frame rate (every 2nd frame), 1.5 times larger (a 720-line camera
on ABODA's 720x480 scene) and mirrored (left and right swapped), each encoded again as H.264, as a
camera sends it. Nothing is painted over them: a clip with a fire, an abandoned bag or a fall still
has it, and a Le2i clip's label comes along (its frame numbers follow the frame rate). Written with
FFmpeg where they are used, never committed.

    python -m benchmarks.variants --out DIR

writes `DIR/alarms/` (vtest, ABODA 4 and FURG house6 in each variant, for `benchmarks.eval_alarms`)
and `DIR/falls_<variant>/` (the 62 Le2i clips with their labels, for `benchmarks.eval_falls`).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from benchmarks.data import media_dir
from benchmarks.fall_clips import read_label

ALARM_CLIPS = ("vtest.avi", "abandoned/aboda_video4.avi", "fire/furg_house6.mp4")
# name -> (frame step, FFmpeg video filter)
VARIANTS = {
    "half_rate": (2, "framestep=2"),  # every 2nd frame, at half the frame rate
    "scaled": (1, "scale=trunc(iw*3/4)*2:trunc(ih*3/4)*2:flags=lanczos"),
    "mirrored": (1, "hflip"),
}


def write_variant(base: str, variant: str, out_dir: Path, media: Path, name: str | None = None) -> Path:
    """Write `base` (relative to `media`) in `variant` into `out_dir` as `name`.mp4 (by default the base's
    name and the variant's); a Le2i label beside the base comes along, renumbered."""
    src = media / base
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such clip; point EDGE_AGENT_MEDIA_DIR at the shared media")
    step, vf = VARIANTS[variant]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or f'{src.stem}_{variant}'}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vf", vf, "-an", "-c:v", "libx264",
                    "-crf", "20", "-pix_fmt", "yuv420p", str(path)], check=True)  # fmt: skip
    label = src.with_suffix(".txt")
    if label.exists():
        fall = read_label(label)
        # 1-based frame n of the base is frame (n - 1) / step + 1 of the variant when it was kept
        start, end = (-(-(fall.start - 1) // step) + 1, (fall.end - 1) // step + 1) if fall.fall else (0, 0)
        path.with_suffix(".txt").write_text(f"{start}\n{end}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder to write the clips into")
    args = ap.parse_args(argv)
    media = media_dir()
    falls = sorted(p.relative_to(media).as_posix() for p in (media / "fall").glob("*.mp4"))
    for variant in VARIANTS:
        for base in ALARM_CLIPS:
            print(write_variant(base, variant, args.out / "alarms", media))
        for base in falls:
            print(write_variant(base, variant, args.out / f"falls_{variant}", media, name=Path(base).stem))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
