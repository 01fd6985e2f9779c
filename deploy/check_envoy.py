"""Check deploy/k8s/envoy-config.yaml against Envoy's own API (xds-protos, the generated
protos of envoyproxy/data-plane-api), offline: every field name, enum and typed_config type
must exist, as Envoy's loader would require. Not part of the server: run it in its own venv,

    python -m venv .deploy-venv && .deploy-venv/bin/pip install xds-protos pyyaml
    .deploy-venv/bin/python deploy/check_envoy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

# Importing a module registers its messages, so typed_config "@type" URLs resolve.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format

CONFIG = Path(__file__).parent / "k8s" / "envoy-config.yaml"


def main() -> int:
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(yaml.safe_load(CONFIG.read_text()), bootstrap)
    except json_format.ParseError as exc:
        print(f"{CONFIG}: {exc}", file=sys.stderr)
        return 1
    listeners = [listener.name for listener in bootstrap.static_resources.listeners]
    clusters = [cluster.name for cluster in bootstrap.static_resources.clusters]
    print(f"{CONFIG.name}: valid Envoy bootstrap; listeners {listeners}, clusters {clusters}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
