"""What every rule shares: the interface, the settings base, class selection, the situation debouncer and
track helpers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.core.events import Body, ClassName, Event, Id, Point, State, Tally
from agent.core.geometry import points_in_polygon
from agent.core.types import Tracks
from agent.core.units import NS_PER_MS, NS_PER_S

K = TypeVar("K")



class Settings(BaseModel):
    """The base of every rule's and analyzer's settings block: strict (unknown keys are errors), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(Protocol):
    """A pure, per-camera rule. State is bounded and evicted for `tracks.ended`.

    Between detections the rules see the tracker's predicted boxes (a camera's `detect.fps`);
    a rule class that reads what a prediction cannot give (box shapes) says
    `needs_fresh_boxes = True`, and its camera is then detected at every frame."""

    rule_id: str

    def update(self, tracks: Tracks) -> list[Event]: ...

    def state_size(self) -> int:
        """Number of entries held; 0 once every track has ended."""
        ...


class ClassSelector:
    """Maps the class names (or class-map categories) a zone watches to model class ids."""

    def __init__(self, names: list[str], class_names: list[str], class_map: dict[str, str]) -> None:
        wanted = set(names)
        ids = [i for i, n in enumerate(class_names) if n in wanted or class_map.get(n) in wanted]
        known = set(class_names) | set(class_map.values())
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"unknown classes {unknown}: the model knows {sorted(known)}")
        self.class_names = class_names
        self._class_map = class_map
        self._set(ids)

    def _set(self, ids: list[int]) -> None:
        self.class_ids = np.asarray(ids, dtype=np.int32)
        # a lookup by class id: np.isin costs 20x more on a frame's few rows, once per zone and frame
        self._watched = np.zeros(len(self.class_names), bool)
        self._watched[self.class_ids] = True

    def only(self, categories: set[str], exclude: bool = False) -> ClassSelector:
        """The watched classes whose name or class-map category is one of `categories` (or, with
        `exclude`, is not): a zone watching persons and weapons gives its weapon rule only the weapons."""
        keep = [self.class_names[i] for i in self.class_ids.tolist()]
        keep = [n for n in keep if (n in categories or self._class_map.get(n) in categories) != exclude]
        sub = ClassSelector([], self.class_names, self._class_map)
        sub._set([self.class_names.index(n) for n in keep])
        return sub

    def mask(self, tracks: Tracks) -> np.ndarray:
        """bool (N,): rows of a watched class."""
        return self._watched[tracks.detections.class_id]

    def name(self, class_id: int) -> str:
        return self.class_names[int(class_id)]


@dataclass(slots=True)
class Spell:
    """One situation of one key: when its condition first held, when it last held,
    whether `started` was emitted, and the latest payload the rule attached to it."""

    since_ns: int
    last_ns: int
    payload: Any
    started: bool = False

    def duration_ms(self, now_ns: int, state: State) -> int:
        """Time in the situation so far (started) or in all, up to the last time it held (ended)."""
        end_ns = now_ns if state == "started" else self.last_ns
        return max(end_ns - self.since_ns, 0) // NS_PER_MS


class Spells(Generic[K]):
    """Debounced situations keyed by track id, zone, ...: the shared start/end logic of every rule.

    A key whose condition holds for `on_s` (gaps shorter than `off_s` tolerated)
    starts once; a started key whose condition has not held for `off_s`, or that
    is `gone` (its track ended), ends once. State holds only keys seen within
    `off_s`, so it empties when the situations do. Before the start, a gap longer than
    `reset_s` (default `off_s`) starts the count again: flickers must not add up.
    """

    def __init__(self, on_s: float, off_s: float, reset_s: float | None = None) -> None:
        self._on_ns = int(on_s * NS_PER_S)
        self._off_ns = int(off_s * NS_PER_S)
        self._reset_ns = self._off_ns if reset_s is None else int(reset_s * NS_PER_S)
        self._spells: dict[K, Spell] = {}

    def update(self, now_ns: int, active: dict[K, Any], gone: Iterable[K] = ()) -> list[tuple[K, State, Spell]]:
        """active: key -> payload for every key whose condition holds now.
        Returns the transitions as (key, "started" | "ended", spell), in key order of appearance."""
        out: list[tuple[K, State, Spell]] = []
        for key, payload in active.items():
            spell = self._spells.setdefault(key, Spell(now_ns, now_ns, payload))
            spell.last_ns, spell.payload = now_ns, payload
            if not spell.started and now_ns - spell.since_ns >= self._on_ns:
                spell.started = True
                out.append((key, "started", spell))
        gone = set(gone)
        for key, spell in list(self._spells.items()):
            if key in gone or now_ns - spell.last_ns > (self._off_ns if spell.started else self._reset_ns):
                del self._spells[key]
                if spell.started:
                    out.append((key, "ended", spell))
        return out

    def events(
        self,
        tracks: Tracks,
        active: dict[K, Any],
        body: Callable[[K, State, int, Any], Any],
        gone: Iterable[K] = (),
        subject: Callable[[K], int | None] = lambda key: None,
    ) -> list[Event]:
        """`update` at the frame's time, as events: `body(key, state, duration_ms, payload)` builds each
        event's body and `subject(key)` names the track it is about (None: no subject)."""
        now = tracks.pts_ns
        return [
            Event(tracks.camera_id, now, body(key, state, spell.duration_ms(now, state), spell.payload), subject(key))
            for key, state, spell in self.update(now, active, gone)
        ]

    def is_started(self, key: K) -> bool:
        spell = self._spells.get(key)
        return spell is not None and spell.started

    def __len__(self) -> int:
        return len(self._spells)


def box_norm(xyxy: np.ndarray, size_wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """A pixel box float (4,) as a normalised (x1, y1, x2, y2) tuple for event bodies."""
    w, h = size_wh
    return (float(xyxy[0]) / w, float(xyxy[1]) / h, float(xyxy[2]) / w, float(xyxy[3]) / h)


def in_zone(tracks: Tracks, polygon: np.ndarray, classes: ClassSelector) -> np.ndarray:
    """bool (N,): rows of a watched class whose anchor (bottom centre) lies inside `polygon` (M, 2)."""
    return points_in_polygon(tracks.anchors_norm(), polygon) & classes.mask(tracks)


class TrackHistory:
    """Recent anchors of each track, float (2,) normalised (or where `project` puts them: metres on the
    ground), kept for `window_s`; evicted when a track ends or is unseen for the window."""

    def __init__(self, window_s: float, project: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self._window_ns = int(window_s * NS_PER_S)
        self._project = project
        self._points: dict[int, deque[tuple[int, np.ndarray]]] = {}

    def update(self, tracks: Tracks, rows: np.ndarray) -> None:
        """Record the anchors of `rows` (int index array) at `tracks.pts_ns` and drop what is stale."""
        now = tracks.pts_ns
        anchors = tracks.anchors_norm() if self._project is None else self._project(tracks.anchors_norm())
        for row in rows.tolist():
            self._points.setdefault(int(tracks.track_id[row]), deque()).append((now, anchors[row]))
        ended = set(tracks.ended.tolist())
        for tid, q in list(self._points.items()):
            while q and now - q[0][0] > self._window_ns:
                q.popleft()
            if not q or tid in ended:
                del self._points[tid]

    def velocity(self, track_id: int) -> np.ndarray | None:
        """Mean velocity over the window, units (normalised, or the projection's) per second, float (2,); None
        below two samples."""
        q = self._points.get(track_id)
        if q is None or len(q) < 2 or q[-1][0] == q[0][0]:
            return None
        return (q[-1][1] - q[0][1]) * (NS_PER_S / (q[-1][0] - q[0][0]))

    def __len__(self) -> int:
        return len(self._points)


class DwellBody(Body):
    """The body of a dwell situation (intrusion, loitering): a subject of a watched class stayed in a zone."""

    zone_id: Id
    state: State = Field(description="started when the dwell is reached, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    duration_ms: int = Field(ge=0, description="time in the zone so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, self.class_name)


class DwellRule:
    """One zone of one camera: a subject of a watched class whose anchor stays inside for `dwell_s` (gaps up to
    `exit_grace_s` tolerated) starts once, and ends when it leaves or is lost. `body` is the kind's `DwellBody`."""

    body: Callable[..., DwellBody]  # a DwellBody subclass, which fixes `kind`

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: Any) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._spells: Spells[int] = Spells(settings.dwell_s, settings.exit_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        anchors = tracks.anchors_norm()
        active = {
            int(tracks.track_id[row]): (self._classes.name(tracks.detections.class_id[row]), tuple(anchors[row].tolist()))
            for row in np.flatnonzero(in_zone(tracks, self._polygon, self._classes))
        }
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: self.body(zone_id=self.rule_id, state=state, class_name=p[0], point=p[1], duration_ms=ms),
            gone=tracks.ended.tolist(),
            subject=lambda tid: tid,
        )

    def state_size(self) -> int:
        return len(self._spells)
