"""Observability: Prometheus metrics and the log context of live sessions.

Kept apart from the hot session and pipeline modules so that several features can report
here without editing each other's code: metrics.py defines every metric and the small functions
that move them; sessions.py watches one live session through the pipeline's neutral hooks;
providers.py counts provider failures by role; logcontext.py is what a log line knows about
the session it was logged in. Nothing here imports an edge (server.grpc, server.http,
webrtc_bridge), so the session core and every edge may import it.
"""
