"""The session core: what every edge (gRPC, REST, WebSocket, WebRTC) shares.

An edge decodes its wire format into a `SessionRequest` once, asks the `SessionOpener` for a
live session, writes `async for event in session.events` to its client, and maps the neutral
error `Kind`s to its own codes. Nothing here imports an edge or grpc.
"""
