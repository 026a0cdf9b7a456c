from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from hearth.net.bind import is_loopback as _is_loopback
from tests.conftest import HEARTH, hearth_env, start_server, stop_server

KEY = "correct horse battery staple"


def test_api_key_is_required_when_set(models_home: Path) -> None:
    srv = start_server(models_home, "--api-key", KEY)
    try:
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        wrong = httpx.get(srv.url + "/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(srv.url + "/api/tags").status_code == 401
        assert httpx.get(srv.url + "/hearth/status").status_code == 401
        assert httpx.get(srv.url + "/").status_code == 200  # the page itself; its API calls need the key
        ok = openai.OpenAI(base_url=srv.base, api_key=KEY, max_retries=0)
        assert "smollm2-135m" in {m.id for m in ok.models.list().data}
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.base, api_key="guess", max_retries=0).models.list()
    finally:
        stop_server(srv)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_binding_beyond_loopback_without_a_key_is_refused(tmp_path: Path, host: str) -> None:
    r = subprocess.run([*HEARTH, "serve", "--host", host, "--port", "0"], env=hearth_env(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "without an API key" in r.stderr and "--api-key" in r.stderr


def test_an_empty_key_is_refused(tmp_path: Path) -> None:
    r = subprocess.run([*HEARTH, "serve", "--api-key", " ", "--port", "0"], env=hearth_env(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "empty" in r.stderr


@pytest.mark.parametrize("host, loop", [("127.0.0.1", True), ("127.5.5.5", True), ("::1", True),
                                        ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False),
                                        ("example.org", False)])
def test_is_loopback(host: str, loop: bool) -> None:
    assert _is_loopback(host) is loop
