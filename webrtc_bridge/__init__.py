"""WebRTC edge: browser calls on aiortc, one peer connection per live voice session.

`routes.router` (signalling under /webrtc, the call page at /client) is included by the HTTP
facade; see calls.py for how a call maps to a session, peer.py for its lifetime.
"""
