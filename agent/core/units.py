"""Time units: every time in the agent is integer nanoseconds (a frame's `pts_ns`)."""

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
