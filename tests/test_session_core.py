"""The session core's plain rules, without a server: end policy, checks, error tables."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.grpc.status import STATUS
from server.http.errors import HTTP_STATUS
from server.sessions import checks, ids
from server.sessions.ending import EndReason
from server.sessions.errors import Kind, RequestError, provider_kind
from webrtc_bridge.routes import HTTP_STATUS as WEBRTC_STATUS


@pytest.mark.parametrize("table", [STATUS, HTTP_STATUS, WEBRTC_STATUS])
def test_every_edge_table_covers_every_kind(table):
    assert set(table) == set(Kind)


def test_end_reasons_final_or_resumable():
    assert EndReason.HANG_UP.final and EndReason.CONNECTION_LOST.final
    assert not EndReason.SHUTDOWN.final and not EndReason.CLIENT_GONE.final
    assert EndReason.of("") is EndReason.INPUT_ENDED and not EndReason.of("").final
    assert EndReason.of("shutdown") is EndReason.SHUTDOWN
    assert EndReason.of("hang_up") == "hang_up"  # stored as the same bare string as before


@pytest.mark.parametrize(
    "text,message",
    [("a\x00b", "NUL"), ("ok \ud800 then", "surrogate"), ("   ", "empty"), ("x" * 11, "limit")],
)
def test_bad_text_is_refused_with_a_reason(text, message):
    with pytest.raises(RequestError, match=message):
        checks.bounded_text(text, "text", 10, required=True)


def test_whole_characters_pass():
    assert checks.bounded_text("pizza 🍕", "text", 10, required=True) == "pizza 🍕"


def test_nan_vad_threshold_says_nan():
    with pytest.raises(RequestError, match="NaN"):
        checks.vad_params(Settings(), threshold=float("nan"))


def test_client_chosen_ids_are_stable_and_strict_ids_are_uuids():
    assert ids.client_chosen("session123") == ids.client_chosen("session123")
    with pytest.raises(RequestError, match="not a UUID"):
        ids.strict("session123")


def test_provider_codes_have_kinds():
    assert provider_kind("resource_exhausted") is Kind.EXHAUSTED
    assert provider_kind("something new") is Kind.PROVIDER_FAILED
