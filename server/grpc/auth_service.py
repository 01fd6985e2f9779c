"""voiceagent.v1.AuthService: client tokens minted over gRPC (the same as POST /v1/client-tokens)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from voiceagent.v1 import auth_pb2
from voiceagent.v1 import auth_pb2_grpc as pb_grpc

from server.auth.authenticator import Authenticator
from server.auth.caller import CONVERSE
from server.auth.tokens import DEFAULT_TTL_S
from server.grpc.auth import current_caller
from server.grpc.status import abort
from server.sessions import ids
from server.sessions.errors import RequestError


class AuthService(pb_grpc.AuthServiceServicer):
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def CreateClientToken(self, request, context):
        try:
            caller = current_caller()
            sid = ids.strict(request.session_id) if request.session_id else ""
            verbs = list(request.verbs) or [CONVERSE]
            minted = self.auth.mint(
                caller, verbs=verbs, session_id=sid, ttl_s=request.ttl_s or DEFAULT_TTL_S
            )
        except RequestError as exc:
            await abort(context, exc)
        expire = Timestamp(seconds=int(minted.expires_at))
        return auth_pb2.CreateClientTokenResponse(
            token=minted.token,
            expire_time=expire,
            tenant_id=caller.tenant_id,
            session_id=sid,
            verbs=sorted(set(verbs)),
        )
