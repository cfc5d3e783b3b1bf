"""Time units: every time in the agent is integer nanoseconds (a frame's `pts_ns`)."""

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# A wall clock before 2025-01-01 UTC was never set: a box that booted without RTC time (JetPack images
# start in 1970 or at their build date) and that no NTP server has reached yet.
EARLIEST_REAL_TIME_S = 1_735_689_600
