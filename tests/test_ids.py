from __future__ import annotations

import hashlib

from telemetry_otel._otel.mapping.ids import otel_span_id, otel_trace_id


def test_w3c_hex_ids_are_used_as_they_are():
    assert otel_trace_id("4bf92f3577b34da6a3ce929d0e0e4736") == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert otel_span_id("anything", "00f067aa0ba902b7") == 0x00F067AA0BA902B7


def test_legacy_trace_id_maps_to_the_first_16_bytes_of_its_sha256():
    expected = int.from_bytes(hashlib.sha256(b"trace-abc-123").digest()[:16], "big")
    assert otel_trace_id("trace-abc-123") == expected
    # A value any other process or language can reproduce: pinned here.
    assert f"{expected:032x}" == hashlib.sha256(b"trace-abc-123").hexdigest()[:32]


def test_legacy_span_id_hashes_trace_id_nul_span_id():
    expected = int.from_bytes(hashlib.sha256(b"trace-abc-123\0span-001").digest()[:8], "big")
    assert otel_span_id("trace-abc-123", "span-001") == expected


def test_same_span_id_in_two_traces_maps_to_two_span_ids():
    assert otel_span_id("trace-a", "span-001") != otel_span_id("trace-b", "span-001")


def test_uppercase_short_or_all_zero_hex_ids_are_hashed():
    for text in (
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "4bf92f3577b34da6",
        "0" * 32,
    ):
        expected = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
        assert otel_trace_id(text) == expected
    zero_span = int.from_bytes(hashlib.sha256(b"t\0" + b"0" * 16).digest()[:8], "big")
    assert otel_span_id("t", "0" * 16) == zero_span


def test_lone_surrogates_map_without_raising():
    assert otel_trace_id("bad\ud800id") == int.from_bytes(
        hashlib.sha256("bad\ud800id".encode("utf-8", "surrogatepass")).digest()[:16], "big"
    )
