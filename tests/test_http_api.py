"""The REST facade's general endpoints and its OpenAPI document, against a real server."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from server.persistence.database import EmbeddedPostgres


async def get(agent, path: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=30) as client:
        return await client.get(path, **kw)


async def test_root_tells_name_version_docs_and_grpc_address(agent):
    reply = await get(agent, "/")
    assert reply.status_code == 200
    info = reply.json()
    assert info["name"] == "Voice Agent API" and info["version"]
    assert (info["docs"], info["redoc"], info["openapi"]) == ("/docs", "/redoc", "/openapi.json")
    assert info["grpc"]["address"] == f"127.0.0.1:{agent.server.port}"
    assert "voiceagent.v1.VoiceAgentService" in info["grpc"]["services"]


async def test_docs_pages_are_served_with_their_scripts_from_this_server(agent):
    """No CDN: a machine without internet still gets working docs pages."""
    for path in ("/docs", "/redoc"):
        reply = await get(agent, path)
        assert reply.status_code == 200 and "text/html" in reply.headers["content-type"]
        scripts = re.findall(r'<script src="([^"]+)"', reply.text)
        assert scripts, f"{path} loads no script"
        for src in scripts:
            assert src.startswith("/"), f"{path} loads {src} from elsewhere"
            asset = await get(agent, src)
            assert asset.status_code == 200 and len(asset.content) > 10_000, src


async def test_health_ok_names_the_providers(agent):
    reply = await get(agent, "/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok" and body["reason"] == ""
    assert body["database"]["status"] == "ok"
    assert {role: p["status"] for role, p in body["providers"].items()} == {
        "stt": "ok",
        "chat": "ok",
        "tts": "ok",
    }
    assert body["providers"]["chat"]["name"].startswith("openai/")


async def test_health_503_when_providers_are_not_configured(start_server):
    agent = await start_server(
        fake=None, stt_provider="openai", chat_provider="openai", tts_provider="openai"
    )
    reply = await get(agent, "/health")
    assert reply.status_code == 503
    body = reply.json()
    assert body["status"] == "unavailable" and "OPENAI_API_KEY" in body["reason"]
    assert body["providers"]["tts"]["status"] == "not_configured"


async def test_health_503_while_the_database_is_down_then_200_again(start_server, tmp_path):
    pg = EmbeddedPostgres(tmp_path)
    url = await asyncio.to_thread(pg.start)
    try:
        agent = await start_server(database_url=url)
        assert (await get(agent, "/health")).status_code == 200
        await asyncio.to_thread(pg.stop)
        down = await get(agent, "/health")
        assert down.status_code == 503
        assert down.json()["database"]["status"] == "down"
        assert "database" in down.json()["reason"]
        await asyncio.to_thread(pg.restart)
        for _ in range(50):  # the pool reconnects on its next use
            if (await get(agent, "/health")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await get(agent, "/health")).status_code == 200
        await agent.server.stop()
    finally:
        await asyncio.to_thread(pg.stop)


async def test_unknown_route_is_json_404(agent):
    reply = await get(agent, "/no/such/thing")
    assert reply.status_code == 404 and reply.json() == {"detail": "Not Found"}


EXPECTED_ROUTES = {
    ("get", "/"),
    ("get", "/health"),
    ("post", "/voice/speech-to-text"),
    ("post", "/voice/text-to-speech"),
    ("post", "/voice-agent/process"),
    ("post", "/conversation/start"),
    ("post", "/conversation/process"),
    ("get", "/ws/status"),
    ("post", "/ws/disconnect/{session_id}"),
    ("get", "/sessions"),
    ("get", "/sessions/{session_id}"),
    ("get", "/sessions/{session_id}/turns"),
    ("get", "/sessions/{session_id}/recordings"),
    ("get", "/sessions/{session_id}/recording"),
    ("post", "/webrtc/offer"),
    ("patch", "/webrtc/offer"),
    ("delete", "/webrtc/calls/{pc_id}"),
    ("get", "/webrtc/calls"),
    ("get", "/webrtc/config"),
    ("post", "/v1/client-tokens"),
    ("post", "/v1/keys"),
    ("get", "/v1/keys"),
    ("delete", "/v1/keys/{key_id}"),
}


@pytest.fixture
async def openapi(agent) -> dict:
    reply = await get(agent, "/openapi.json")
    assert reply.status_code == 200
    return reply.json()


async def test_openapi_lists_every_endpoint(openapi):
    routes = {(m, path) for path, ops in openapi["paths"].items() for m in ops}
    assert routes == EXPECTED_ROUTES


async def test_every_route_has_a_summary_and_a_response_model(openapi):
    schemas = openapi["components"]["schemas"]
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), f"{where} has no summary"
            if "204" in op["responses"]:  # no content by design (PATCH candidates, DELETE)
                assert "content" not in op["responses"]["204"], where
                continue
            content = op["responses"]["200"]["content"]
            for media, spec in content.items():
                schema = spec["schema"]
                if media.startswith("audio/"):
                    assert schema == {"type": "string", "format": "binary"}, where
                    continue
                assert "$ref" in schema, f"{where} 200 has no response model"
                name = schema["$ref"].rsplit("/", 1)[1]
                assert schemas[name]["properties"], f"{where}: {name} is empty"
            if method == "post":  # inputs are documented too
                assert "requestBody" in op or "parameters" in op, where


async def test_request_models_carry_examples(openapi):
    schemas = openapi["components"]["schemas"]
    for name in ("StartIn", "ProcessIn", "SpeechIn", "VoiceTurnOut"):
        assert schemas[name].get("examples"), f"{name} has no example"
