"""deploy/ checked offline: the manifests parse, set only settings that exist (with values the
server accepts), and their probes, ports and grace periods agree with the server's.

The Envoy config is checked against Envoy's own API by deploy/check_envoy.py (xds-protos, in
its own venv); here only its clusters' ports are compared with the pods'.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from server.config import Settings
from server.workers.parent import STOP_MARGIN_S

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
FIELDS = {name.upper() for name in Settings.model_fields}


def k8s() -> dict[str, dict]:
    """Every object in deploy/k8s, as "Kind/name"."""
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name in ("kustomization.yaml", "envoy-config.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def server_container() -> dict:
    pod = k8s()["Deployment/voiceagent"]["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "server")


def deployment_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in server_container()["env"]}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def seconds(value: str | int) -> float:
    match = re.fullmatch(r"(\d+)s?", str(value))
    assert match, value
    return float(match.group(1))


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    block = re.findall(r"^ENV (.+)$", text, re.M)
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(block)))


def test_every_variable_the_manifests_set_is_a_setting_the_server_accepts(monkeypatch):
    secret = k8s()["Secret/voiceagent-secrets"]["stringData"]
    environments = {
        "k8s Deployment": deployment_env(),
        "k8s Secret": secret,
        "compose": compose()["services"]["server"]["environment"],
        "Dockerfile": {k: v for k, v in dockerfile_env().items() if k not in ("PYTHONPATH",)},
    }
    for where, env in environments.items():
        unknown = set(env) - FIELDS - {"PYTHONUNBUFFERED"}
        assert not unknown, f"{where} sets {unknown}: not settings (server/config.py)"
    # The Deployment's own values (secrets aside) make valid settings, an empty
    # WEBRTC_ICE_SERVERS included.
    for name, value in {**dockerfile_env(), **deployment_env()}.items():
        if name in FIELDS:
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.workers == 2 and settings.require_auth and settings.webrtc_ice_servers == []


def test_kubernetes_probes_and_termination_match_the_server():
    container = server_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    image_env = dockerfile_env()
    assert ports == {"grpc": int(image_env["GRPC_PORT"]), "http": int(image_env["HTTP_PORT"])}
    # Readiness: gRPC health (NOT_SERVING once draining); liveness: GET /, never /health.
    assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    assert container["startupProbe"]["grpc"]["port"] == ports["grpc"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/"
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pod = k8s()["Deployment/voiceagent"]["spec"]["template"]["spec"]
    grace = float(deployment_env()["SHUTDOWN_GRACE_S"])
    needed = float(pre_stop[1]) + grace + STOP_MARGIN_S
    assert pod["terminationGracePeriodSeconds"] > needed
    assert pod["securityContext"]["runAsNonRoot"]
    # The container's CPU limit and WORKERS agree (one worker per core).
    assert int(container["resources"]["limits"]["cpu"]) == int(deployment_env()["WORKERS"])


def test_compose_gives_the_drain_its_time_and_postgres_enough_connections():
    services = compose()["services"]
    server = services["server"]
    grace = float(server["environment"]["SHUTDOWN_GRACE_S"])
    assert seconds(server["stop_grace_period"]) >= grace + STOP_MARGIN_S
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:16")
    max_connections = int(services["postgres"]["command"][-1].split("=")[1])
    workers = int(re.search(r"\d+", server["environment"]["WORKERS"]).group())
    pool = Settings.model_fields["db_pool_size"].default
    assert max_connections >= 2 * workers * pool  # room for a second replica or a restart


def test_envoy_sends_grpc_and_http_to_the_pods_ports():
    config = yaml.safe_load((DEPLOY / "k8s" / "envoy-config.yaml").read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

    def port(cluster: str) -> int:
        endpoint = clusters[cluster]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert address["address"] == "voiceagent-pods"  # the headless Service
        return int(address["port_value"])

    service = {p["name"]: p["port"] for p in k8s()["Service/voiceagent-pods"]["spec"]["ports"]}
    assert port("voiceagent_grpc") == service["grpc"] and port("voiceagent_http") == service["http"]
    assert "grpc_health_check" in clusters["voiceagent_grpc"]["health_checks"][0]
    assert clusters["voiceagent_http"]["health_checks"][0]["http_health_check"]["path"] == (
        "/health"  # 503 while draining
    )
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert {"upgrade_type": "websocket"} in manager["typed_config"]["upgrade_configs"]


@pytest.mark.parametrize("line", ["USER voiceagent", 'CMD ["python", "-m", "server"]'])
def test_the_image_runs_the_server_as_a_user(line):
    assert line in (DEPLOY / "Dockerfile").read_text().splitlines()


@pytest.mark.parametrize("name", ["CORS_ORIGINS", "WEBRTC_ICE_SERVERS"])
def test_a_json_list_setting_is_empty_when_blank_and_named_when_not_json(monkeypatch, name):
    monkeypatch.setenv(name, "")
    assert getattr(Settings(_env_file=None), name.lower()) == []
    monkeypatch.setenv(name, "[not json")
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)
    assert name.lower() in str(info.value) and "not JSON" in str(info.value)
    assert "[not json" not in str(info.value)  # inputs are never quoted (secrets)
