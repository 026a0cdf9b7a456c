"""Base64 for keys, nonces, signatures and sealed boxes on the wire: one encoder, one strict decoder.

hearth writes the URL-safe alphabet without padding (it goes in HTTP headers, JSON and file
names). The decoder accepts that, padded text, and the standard alphabet (`+/`, which WireGuard
keys use), and refuses everything else: Python's default decoder silently drops characters
outside the alphabet, so two different strings could name one key, and junk from a peer would
pass as data.

Peers running older hearth decode pairing fields by appending the missing `=` themselves, so the
unpadded output is understood by them; tests/net/test_b64.py checks that.
"""

from __future__ import annotations

import base64
import binascii
import re

_B64_RE = re.compile(r"[A-Za-z0-9_+/-]*")
_TO_STANDARD = str.maketrans("-_", "+/")


def encode(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode(text: str) -> bytes:
    """The bytes `text` encodes, in either alphabet, padded or not; ValueError for anything that is
    not exactly one base64 encoding (stray characters, wrong padding, bits a real encoder leaves 0)."""
    if not isinstance(text, str):
        raise ValueError(f"base64 is text, not {type(text).__name__}")
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if padding and (padding > 2 or len(text) % 4):
        raise ValueError("not base64: its '=' padding does not fill the last group of four")
    if not _B64_RE.fullmatch(body):
        raise ValueError("not base64: only letters, digits, - _ + / and = at the end may appear")
    if len(body) % 4 == 1:
        raise ValueError("not base64: its length is one more than a multiple of four")
    standard = body.translate(_TO_STANDARD)
    try:
        data = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc
    if base64.b64encode(data).decode("ascii").rstrip("=") != standard:
        raise ValueError("not base64: its last character has bits a real encoder leaves zero")
    return data
