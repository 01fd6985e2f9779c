"""Who is calling: API keys and short-lived client tokens, resolved to a `Caller`.

Edges take the bearer credential from their wire (gRPC metadata, an HTTP header, a WebSocket
query parameter) and hand it to the `Authenticator`; the session core then checks the
caller's tenant and verbs. Nothing here imports an edge.
"""
