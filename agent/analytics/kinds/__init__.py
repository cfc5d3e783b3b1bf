"""Every event kind, one file each; `ALL` registers them (a new kind: a new file and one entry here).

The order is the zones document's field order and the order a camera's rules run in.
"""

from __future__ import annotations

from agent.analytics.kinds import (
    abandoned,
    crowd_density,
    crowd_movement,
    fire,
    intrusion,
    line_count,
    loitering,
    occupancy,
    person_down,
    weapon,
    wrong_way,
)
from agent.analytics.registry import Kind

ALL: tuple[Kind, ...] = (
    intrusion.KIND,
    occupancy.KIND,
    loitering.KIND,
    wrong_way.KIND,
    crowd_density.KIND,
    crowd_movement.KIND,
    abandoned.KIND,
    person_down.KIND,
    weapon.KIND,
    fire.KIND,
    line_count.KIND,
)
ZONE_KINDS = tuple(k for k in ALL if k.on == "zone")
LINE_KINDS = tuple(k for k in ALL if k.on == "line")
