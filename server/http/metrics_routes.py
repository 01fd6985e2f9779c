"""GET /metrics: the Prometheus text exposition (server/observe/metrics.py).

Open without authentication, like /health, so a Prometheus server can scrape it with no
credential to manage; it shows counts and latencies, never ids, texts or audio. Operators who
expose the HTTP port beyond their network should block /metrics at the proxy or firewall
(docs/observability.md). Not in the OpenAPI document: it is not part of the API clients use.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from server.http.deps import CoreDep
from server.observe import metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(core: CoreDep) -> Response:
    metrics.sync_writer(core.writer)  # exact at scrape time, not a sample old
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
