"""Pure analytics rules: `update(tracks) -> list[Event]`, time from `pts_ns`, bounded state."""
