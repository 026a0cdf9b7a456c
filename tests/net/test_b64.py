"""Base64 on the wire: round trips, what is accepted, junk refused, and pairing with older peers."""

from __future__ import annotations

import base64
import binascii
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.net import b64


def old_pairing_decode(text: str) -> bytes:
    """hearth.pairing.exchange._b64d before this module: how a peer running older hearth decodes
    every pairing field (it appends the padding itself, and drops stray characters)."""
    try:
        return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError("not base64") from exc


def old_pairing_encode(data: bytes) -> str:
    """hearth.pairing.exchange._b64e before this module: URL-safe and padded."""
    return base64.urlsafe_b64encode(data).decode()


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    text = b64.encode(data)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text)  # URL-safe, unpadded: fits headers, JSON and file names
    assert b64.decode(text) == data


@given(st.binary(max_size=200))
def test_padded_and_standard_alphabets_are_read_too(data: bytes) -> None:
    assert b64.decode(base64.urlsafe_b64encode(data).decode()) == data
    assert b64.decode(base64.b64encode(data).decode()) == data  # WireGuard keys: + / and padding
    assert b64.decode(base64.b64encode(data).decode().rstrip("=")) == data


@given(st.binary(max_size=200))
def test_pairing_stays_compatible_with_peers_running_the_old_code(data: bytes) -> None:
    # Our unpadded output is what older hearth decodes once it has added the padding itself...
    assert old_pairing_decode(b64.encode(data)) == data
    # ...and what older hearth sends (padded) we read.
    assert b64.decode(old_pairing_encode(data)) == data


@pytest.mark.parametrize("text", [
    "a", "AAAAA",            # one character past a group of four encodes no byte
    "QQ=", "QQ===", "QQQ==", "====", "Q===", "Q=Q=", "=QQQ",  # padding in the wrong amount or place
    "QR", "QUF",             # bits a real encoder leaves zero (non-canonical: two texts for one value)
    " QQ", "QQ ", "Q Q", "QQ\n", "QQ\x00", "QQ.", "QQ€", "QQ%3D", "QQ!!",  # stray characters
])
def test_junk_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        b64.decode(text)


@given(st.binary(min_size=1, max_size=60), st.characters(exclude_characters="ABCDEFGHIJKLMNOPQRSTUVWXYZ"
       "abcdefghijklmnopqrstuvwxyz0123456789+/-_="), st.data())
def test_a_stray_character_anywhere_is_refused_never_dropped(data: bytes, junk: str, draw: st.DataObject) -> None:
    text = b64.encode(data)
    at = draw.draw(st.integers(0, len(text)))
    with pytest.raises(ValueError):
        b64.decode(text[:at] + junk + text[at:])


@given(st.text(max_size=60))
def test_any_text_decodes_to_the_one_value_it_encodes_or_is_refused(text: str) -> None:
    try:
        data = b64.decode(text)
    except ValueError:
        return
    assert b64.encode(data) == text.rstrip("=").replace("+", "-").replace("/", "_")


def test_not_text_is_refused() -> None:
    with pytest.raises(ValueError):
        b64.decode(b"QQ")  # type: ignore[arg-type]
