"""Choose the person_down settings by leave-one-room-out cross-validation on recorded clips.

`benchmarks.eval_falls --cache var/falls` records, per clip, what the camera's rules were
given on every frame of the real pipeline (tracks, and the grey frame the analyzers
see). This replays the person_down rule and the silhouette analyzer on those
recordings for every setting in a small grid, without the model:

    python -m benchmarks.tune_falls --cache var/falls --labels ../shared/media/fall \\
        [--augment var/falls_mirrored var/variants/falls_mirrored ...] \\
        --json benchmarks/results/falls_tuning.json

For each of the four rooms, the setting with the lowest cost on the other three (plus
the recordings without a label, vtest, ABODA and FURG, as negatives) is measured on it
(held out); those are the figures to report. `--augment` adds recordings of the same
clips as other cameras give them (`benchmarks.variants`: half the frame rate, larger,
mirrored; `eval_falls --cache` over that folder, with its labels): every fold trains on
the other rooms in every form, and is measured on its own room as recorded (its other
forms are reported apart, also held out). The shipped defaults are the setting most
folds chose (between as many, the lowest cost on all rooms). Cost: three per missed fall, one per
clip with a false alarm (a no-fall clip with a start, or a fall clip with a start
outside its fall window): a false alarm costs an operator's trust, a missed fall costs
more; between equal costs the stricter setting (the longer `down_s`, then the larger
`blob_min_aspect`), then the lower median latency.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.analytics.analyzers.silhouette import SilhouetteAnalyzer, SilhouetteAnalyzerSettings
from agent.analytics.base import ClassSelector
from agent.analytics.camera import Scheduled
from agent.analytics.kinds.person_down import PersonDownRule, PersonDownSettings
from agent.core.types import Detections, Tracks
from benchmarks.fall_clips import FULL, ROOMS, YOLOX, ClipResult, Label, by_room, read_label, room_of, summarise
from benchmarks.report import write_json
from engines.manifest import load_manifest

# the grid: every combination is replayed on every clip
GRID = {
    "down_s": [1.5, 2.0],
    "fall_s": [1.5, 2.5],
    # not below 0.45: a person seated on a chair has their top about 0.3-0.45 upright heights down, and
    # sitting must not raise it (tests/agent/rules/test_person_down.py), whatever the rooms here show
    "blob_drop_ratio": [0.45, 0.55],
    "blob_max_above": [0.2, 0.3],
    "sink_min": [0.0, 0.05, 0.1],
    # the silhouette showing a person the detector lost still standing: loose, middle, strict
    "standing_fg_min": [0.1, 0.3, 0.5],
    # the silhouette below the drop: any shape, or not much taller than wide (not the legs of someone crouching)
    "blob_min_aspect": [0.0, 0.7],
}
MISS_COST, FALSE_ALARM_COST = 3.0, 1.0
RECORDED = "recorded"  # the clips as recorded; held-out figures are measured on these


@dataclass
class Recording:
    name: str
    fps: float
    label: Label | None
    tracks: list[Tracks]
    grey: np.ndarray  # uint8 (F, h, w)
    form: str = RECORDED  # or the variant's: the same clip as another camera gives it


def load(path: Path, media: Path | None, form: str = RECORDED) -> Recording:
    z = np.load(path)
    pts, rows, ended = z["pts_ns"], z["rows"], z["ended"]
    size = tuple(int(v) for v in z["size_wh"])
    tracks = []
    for i, t in enumerate(pts.tolist(), start=1):
        r = rows[rows[:, 0] == i]
        det = Detections(r[:, 2:6].astype(np.float32).reshape(-1, 4), r[:, 6].astype(np.float32), r[:, 7].astype(np.int32))
        tracks.append(Tracks("cam", t, det, r[:, 1].astype(np.int64), ended[ended[:, 0] == i, 1], size))
    txt = (media / f"{path.stem}.txt") if media is not None else None
    label = read_label(txt) if txt is not None and txt.exists() else None
    name = path.stem if form == RECORDED else f"{path.stem}@{form}"  # room_of still reads the room
    return Recording(name, float(z["fps"]), label, tracks, z["grey"], form)


def silhouettes(rec: Recording, settings: SilhouetteAnalyzerSettings, fps: float) -> list[np.ndarray | None]:
    """The analyzer's mask as the rule sees it at each frame (it looks at `fps` per second)."""
    scheduled = Scheduled(SilhouetteAnalyzer(settings), fps)
    out = []
    for t, grey in zip(rec.tracks, rec.grey):
        if scheduled.due(t.pts_ns):
            scheduled.analyzer.observe_grey(grey, t.pts_ns)
            scheduled.last_ns = t.pts_ns
        out.append(scheduled.analyzer.mask)
    return out


class _Replayed:
    """The silhouette analyzer's output, replayed."""

    mask: np.ndarray | None = None


def replay(rec: Recording, masks: list[np.ndarray | None], settings: PersonDownSettings, classes: ClassSelector) -> ClipResult:
    seen = _Replayed()
    rule = PersonDownRule("room", np.asarray(FULL, np.float32), classes, seen, settings)
    result = ClipResult(rec.name, rec.fps, len(rec.tracks), rec.label)
    for i, (tracks, mask) in enumerate(zip(rec.tracks, masks), start=1):
        seen.mask = mask
        for e in rule.update(tracks):
            (result.started if e.body.state == "started" else result.ended).append(i)
    return result


_shared: tuple = ()  # in each worker of the grid's pool: (the rooms' recordings, the others', masks, classes)


def _share(*shared) -> None:
    global _shared
    _shared = shared


def _replay_all(combo: dict) -> tuple[list[ClipResult], list[ClipResult]]:
    recs, others, masks, classes = _shared
    settings = PersonDownSettings().model_copy(update=combo)
    return tuple([replay(r, masks[r.name], settings, classes) for r in part] for part in (recs, others))


def cost(summary: dict, settings: dict) -> tuple[float, float, float, float]:
    """Errors first; between equal errors the stricter setting (the safer on footage not seen): the longer
    `down_s`, then the stricter silhouette shape (`blob_min_aspect`); then latency."""
    false_alarms = len(summary["false_alarm_clips"]) + len(summary["outside_window_on_fall_clips"])
    errors = MISS_COST * len(summary["missed"]) + FALSE_ALARM_COST * false_alarms
    return errors, -settings["down_s"], -settings["blob_min_aspect"], summary["latency_s_median"] or 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path("var/falls"), help="recordings written by eval_falls --cache")
    p.add_argument("--labels", type=Path, required=True, help="folder with the clips' .txt labels")
    p.add_argument("--augment", nargs=2, type=Path, action="append", default=[], metavar=("CACHE", "LABELS"),
                   help="recordings of the same clips in another form (eval_falls --cache over a benchmarks.variants "
                        "folder) and that folder's labels: trained on in the other rooms' folds, reported apart in "
                        "their own room's (repeatable)")  # fmt: skip
    p.add_argument("--json", type=Path, help="write the grid's results and the held-out figures here")
    args = p.parse_args(argv)
    m = load_manifest(YOLOX)
    classes = ClassSelector(["person"], m.classes, m.class_map)
    sources = [(RECORDED, args.cache, args.labels)] + [(cache.name, cache, labels) for cache, labels in args.augment]
    forms = [form for form, _, _ in sources]
    if len(set(forms)) < len(forms):
        raise SystemExit(f"two recordings folders have the same name ({', '.join(forms)}): name each form apart")
    recs = []
    for form, cache, labels in sources:
        found = [load(path, labels, form) for path in sorted(cache.glob("*.npz"))]
        if not any(r.label is not None for r in found):
            target = "eval-falls" if form == RECORDED else "eval-variants"
            raise SystemExit(f"no recordings with labels in {cache} (labels from {labels}): run `make {target}` first")
        unlabelled = [r.name for r in found if r.label is None and room_of(r.name) in ROOMS]
        if unlabelled:
            raise SystemExit(f"no label in {labels} for {', '.join(unlabelled)}: give each Le2i clip its .txt")
        recs.extend(found)
    # recordings from elsewhere (vtest, ABODA, FURG): no fall, so any start is a false alarm; they are
    # negatives in the training set of every fold (the rooms are what is held out)
    others = [r for r in recs if room_of(r.name) not in ROOMS]
    recs = [r for r in recs if room_of(r.name) in ROOMS]
    recorded = [r.form == RECORDED for r in recs]
    analyzer = SilhouetteAnalyzerSettings()
    fps = 10.0  # the silhouette analyzer's default rate (agent/analytics/analyzers/settings.py)
    masks = {r.name: silhouettes(r, analyzer, fps) for r in recs + others}
    combos = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    # every core replays its share of the grid (forked: the workers share the recordings, copy on write)
    with multiprocessing.get_context("fork").Pool(initializer=_share, initargs=(recs, others, masks, classes)) as pool:
        replayed = pool.map(_replay_all, combos, chunksize=4)
    runs = {i: on_recs for i, (on_recs, _) in enumerate(replayed)}
    other_runs = {i: on_others for i, (_, on_others) in enumerate(replayed)}

    def part(i: int, room: str, as_recorded: bool) -> list[ClipResult]:
        return [c for c, rec in zip(runs[i], recorded) if room_of(c.name) == room and rec == as_recorded]

    folds = {}
    held_out: list[ClipResult] = []
    held_out_other_forms: list[ClipResult] = []
    for room in ROOMS:
        train = {i: summarise([c for c in res if room_of(c.name) != room] + other_runs[i]) for i, res in runs.items()}
        best = min(train, key=lambda i: cost(train[i], combos[i]))
        test = part(best, room, True)
        held_out.extend(test)
        held_out_other_forms.extend(part(best, room, False))
        folds[room] = {"chosen": combos[best], "train_errors": cost(train[best], combos[best])[0], "held_out": summarise(test)}
        print(f"{room}: chosen on the other rooms {combos[best]}; held out: {summarise(test)}")
    overall = {i: summarise(res + other_runs[i]) for i, res in runs.items()}
    # shipped: the setting most folds chose; between as many, the lowest cost on all rooms (every form)
    chosen = [combos.index(f["chosen"]) for f in folds.values()]
    final = min(set(chosen), key=lambda i: (-chosen.count(i), cost(overall[i], combos[i])))
    other_starts = {r.name: len(r.started) for r in other_runs[final]}
    held = by_room(held_out)
    held_other_forms = by_room(held_out_other_forms) if held_out_other_forms else None
    shipped_all = summarise([c for c, rec in zip(runs[final], recorded) if rec])
    report = {
        "grid": GRID,
        "forms": forms,
        "folds": folds,
        "held_out": held,
        "held_out_other_forms": held_other_forms,
        "shipped": combos[final],
        "shipped_on_all_rooms_not_held_out": shipped_all,
        "shipped_on_other_clips": other_starts,
        "grid_results": [{"settings": combos[i], "all": overall[i]} for i in overall],
    }
    print(f"held out, all rooms: {held['all']}")
    if held_other_forms:
        print(f"held out, the same rooms in the other forms: {held_other_forms['all']}")
    print(f"shipped defaults (chosen by most folds): {combos[final]}; on all rooms as recorded: {shipped_all}")
    print(f"person_down starts with them on the clips without a fall: {other_starts}")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
