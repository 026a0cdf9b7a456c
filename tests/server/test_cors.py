"""Issue 14, item 9: CORS for other web pages, over real HTTP to a real `hearth serve`. Off by default
(no CORS headers at all); with HEARTH_CORS_ORIGINS, preflights from those origins are answered (without
the API key, which a preflight never carries), others refused, and replies (a 401 too) carry the header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.settings import Settings
from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow

KEY = "cors test key"
PAGE, OTHER = "http://app.example:3000", "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
ASK = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def open_to_page(models_home: Path) -> Iterator[Server]:
    srv = start_server(models_home, "--api-key", KEY, HEARTH_CORS_ORIGINS=f"{PAGE}, https://b.example")
    yield srv
    stop_server(srv)


def _cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def test_off_by_default_no_cors_headers_at_all(server: Server) -> None:
    pre = httpx.options(server.base + "/chat/completions", headers={"Origin": PAGE, **PREFLIGHT})
    got = httpx.get(server.base + "/models", headers={"Origin": PAGE})
    assert pre.status_code == 405 and not _cors_headers(pre)
    assert got.status_code == 200 and not _cors_headers(got)


def test_preflight_answered_for_allowed_origins_without_the_key(open_to_page: Server) -> None:
    for origin in (PAGE, "https://b.example"):
        r = httpx.options(open_to_page.base + "/chat/completions", headers={"Origin": origin, **PREFLIGHT})
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()


def test_preflight_refused_for_other_origins(open_to_page: Server) -> None:
    r = httpx.options(open_to_page.base + "/chat/completions", headers={"Origin": OTHER, **PREFLIGHT})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_replies_carry_the_header_for_allowed_origins_only(open_to_page: Server) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    ok = httpx.post(open_to_page.base + "/chat/completions", json=ASK, headers={"Origin": PAGE, **auth}, timeout=60)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == PAGE
    assert "retry-after" in ok.headers["access-control-expose-headers"].lower()
    refused = httpx.get(open_to_page.base + "/models", headers={"Origin": PAGE})  # no key: the page can read why
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == PAGE
    other = httpx.get(open_to_page.base + "/models", headers={"Origin": OTHER, **auth})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("value, origins", [("", []), (" * ", ["*"]), ("http://a:1,https://b.example ", ["http://a:1", "https://b.example"])])
def test_origins_setting_parsed(value: str, origins: list[str]) -> None:
    assert Settings(cors_origins=value).cors_origin_list == origins


@pytest.mark.parametrize("value", ["app.example", "https://app.example/path", "ftp://x", "https://a b"])
def test_a_malformed_origin_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_origins=value)
