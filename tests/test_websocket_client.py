"""The probe's hand-written WebSocket client: framing pinned against RFC 6455 examples."""

from __future__ import annotations

import pytest

from supervisor.websocket_client import OP_TEXT, accept_key, encode_frame


def test_accept_key_matches_the_rfc_example() -> None:
    # RFC 6455, section 1.3.
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_masked_text_frame_matches_the_rfc_example() -> None:
    # RFC 6455, section 5.7: a single-frame masked text message "Hello".
    frame = encode_frame(OP_TEXT, b"Hello", bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize(
    ("length", "header_bytes"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)],
)
def test_payload_length_encoding(length: int, header_bytes: int) -> None:
    frame = encode_frame(OP_TEXT, b"x" * length, b"\x00\x00\x00\x00")
    assert len(frame) == header_bytes + 4 + length
    assert frame[header_bytes + 4 :] == b"x" * length
