"""Scenario modules; importing them registers them, in ORDER (= table order)."""

import importlib

ORDER = (
    "pipeline_overhead",
    "transport",
    "live_sessions",
    "voice_to_voice",
    "barge_in",
    "persistence",
    "offline",
    "webrtc",
    "cluster",
    "capacity",
)

for _name in ORDER:
    importlib.import_module(f"bench.scenarios.{_name}")
