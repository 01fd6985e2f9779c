"""The edges' transport security, on a real server: TLS on the gRPC and HTTP ports, CORS only
for listed origins, secrets kept out of logs and configuration errors, and dependency floors
that close published advisories."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import ssl
import sys
import tomllib
import uuid
from importlib.metadata import version
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from pydantic import ValidationError
from websockets.asyncio.client import connect

from server.app import tls_pair
from server.config import Settings
from tests.test_ws import Ws, ws_url

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_on_both_ports_and_plaintext_clients_fail(start_server, tmp_path):
    cert, key = self_signed(tmp_path)
    agent = await start_server(tls_cert_file=cert, tls_key_file=key)
    check = health_pb2.HealthCheckRequest()

    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    async with grpc.aio.secure_channel(agent.address, credentials) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(check, timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the fixture's plaintext channel
        await health_pb2_grpc.HealthStub(agent.channel).Check(check, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    https = agent.http_url.replace("http://", "https://")
    trust = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(verify=trust, timeout=TIMEOUT) as client:
        reply = await client.get(f"{https}/health")
    assert reply.status_code == 200 and reply.json()["status"] == "ok"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"{agent.http_url}/health")

    wss = ws_url(agent, f"tls-{uuid.uuid4().hex[:8]}").replace("ws://", "wss://")
    async with connect(wss, ssl=trust, open_timeout=TIMEOUT) as socket:
        await Ws(socket).next("session_started")


def test_tls_files_go_together_and_must_match(tmp_path):
    cert, key = self_signed(tmp_path)
    for one in ({"tls_cert_file": cert}, {"tls_key_file": key}):
        with pytest.raises(ValidationError, match="TLS_CERT_FILE and TLS_KEY_FILE go together"):
            Settings(_env_file=None, **one)
    with pytest.raises(ValidationError, match="tls_cert_file"):
        Settings(_env_file=None, tls_cert_file=tmp_path / "missing.crt", tls_key_file=key)
    _, other_key = self_signed(tmp_path, "other")
    mismatched = Settings(_env_file=None, tls_cert_file=cert, tls_key_file=other_key)
    with pytest.raises(RuntimeError, match="TLS_CERT_FILE/TLS_KEY_FILE cannot be used"):
        tls_pair(mismatched)
    assert tls_pair(Settings(_env_file=None, tls_cert_file=cert, tls_key_file=key))[1].startswith(
        b"-----BEGIN CERTIFICATE-----"
    )


async def test_a_configuration_error_does_not_print_the_openai_key(tmp_path):
    """`python -m server` with half a TLS pair: exit 2 and a message, without the inputs (a
    cross-field error would otherwise quote every setting)."""
    cert, _ = self_signed(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLS_")}
    env.update(OPENAI_API_KEY="sk-secret-value", TLS_CERT_FILE=str(cert))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2, err.decode()
    assert "TLS_CERT_FILE and TLS_KEY_FILE go together" in err.decode()
    assert b"sk-secret-value" not in out + err
    settings = Settings(_env_file=None, openai_api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(settings) + str(settings.model_dump())


def test_cors_origins_from_the_environment(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", '["https://app.example", "*"]')
    assert Settings(_env_file=None).cors_origins == ["https://app.example", "*"]
    monkeypatch.delenv("CORS_ORIGINS")
    assert Settings(_env_file=None).cors_origins == []


async def preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/conversation/start",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


async def test_cors_answers_listed_origins_only(start_server):
    agent = await start_server(cors_origins=["https://app.example"])
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as client:
        listed = await preflight(client, "https://app.example")
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in listed.headers["access-control-allow-headers"].lower()
        unlisted = await preflight(client, "https://elsewhere.example")
        assert "access-control-allow-origin" not in unlisted.headers
        simple = await client.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in simple.headers


async def test_cors_default_is_none_and_star_is_any(start_server):
    closed, any_origin = await start_server(), await start_server(cors_origins=["*"])
    for agent, expected in ((closed, None), (any_origin, "*")):
        async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as client:
            reply = await preflight(client, "null")  # a page opened from a file
            assert reply.headers.get("access-control-allow-origin") == expected
            simple = await client.get("/health", headers={"Origin": "https://any.example"})
            assert simple.headers.get("access-control-allow-origin") == expected


async def test_query_tokens_are_redacted_from_the_server_logs(agent, caplog):
    caplog.set_level(logging.INFO)
    for name in ("uvicorn.error", "uvicorn.access"):  # the handshake's debug lines too
        caplog.set_level(logging.DEBUG, logger=name)
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as client:
        assert (await client.get("/health?api_key=secret-value&verbose=1")).status_code == 200
    session_id = f"redact-{uuid.uuid4().hex[:8]}"
    url = ws_url(agent, session_id, "?token=secret-value&customer_id=c1")
    async with connect(url, open_timeout=TIMEOUT) as socket:
        ws = Ws(socket)
        await ws.next("session_started")
        await ws.send(type="end_of_input")
        await ws.closed()
    server_log = "\n".join(  # not this test's own client (httpx logs its request URLs)
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert f"/ws/voice-agent/{session_id}?token=[redacted]&customer_id=c1" in server_log
    assert "/health?api_key=[redacted]&verbose=1" in server_log
    assert "secret-value" not in server_log


ADVISORY_FLOORS = {  # package: the last version an advisory applies to
    "python-multipart": "0.0.26",
    "starlette": "1.3.0",
    "aiortc": "1.14.0",
    "aioice": "0.9.0",
}


def test_dependency_floors_exclude_advised_versions_and_are_installed():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = {r.name: r for r in map(Requirement, pyproject["project"]["dependencies"])}
    for name, advised in ADVISORY_FLOORS.items():
        specifier = requirements[name].specifier
        assert not specifier.contains(advised), f"{name} {specifier} allows {advised}"
        assert specifier.contains(version(name)), f"installed {name} {version(name)}"
