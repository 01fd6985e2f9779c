"""The original voice-agent REST and WebSocket API (FastAPI), served next to gRPC in one loop.

Modules: app (create_app), serve (uvicorn in the server's loop), live (sessions for requests
and sockets), turns (one REST turn), *_routes (endpoints), ws + ws_protocol + ws_registry (the
WebSocket), audio_codec (PyAV decode/encode), schemas + session_schemas (bodies), errors.
"""
