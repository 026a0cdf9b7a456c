"""`hearth contribute`'s arguments, in this process (tests/cli/inprocess.py): bad ones stop it with
exit 2 and one line before anything is dialled; the link URL and the redial backoff are pure."""

from __future__ import annotations

from pathlib import Path

from hearth.public_swarm.worker import BACKOFF_FIRST_S, BACKOFF_MAX_S, link_url, next_delay
from tests.cli.inprocess import hearth_here


def test_contribute_needs_a_coordinator(tmp_path: Path) -> None:
    r = hearth_here(tmp_path, "contribute")
    assert r.code == 2 and "--coordinator" in r.stderr


def test_contribute_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    r = hearth_here(tmp_path, "contribute", "--coordinator", "ftp://example.invalid")
    assert r.code == 2 and "is not http(s)://HOST[:PORT]" in r.stderr


def test_contribute_bounds_max_jobs(tmp_path: Path) -> None:
    for bad in ("0", "65", "two"):
        r = hearth_here(tmp_path, "contribute", "--coordinator", "http://127.0.0.1:1", "--max-jobs", bad)
        assert r.code == 2, (bad, r)


def test_contribute_refuses_a_model_it_does_not_hold(tmp_path: Path) -> None:
    r = hearth_here(tmp_path, "contribute", "--coordinator", "http://127.0.0.1:1", "--model", "no-such-model")
    assert r.code == 3 and "no-such-model" in r.stderr


def test_contribute_refuses_bad_hours_and_upload_caps_before_loading_anything(tmp_path: Path) -> None:
    url = ("--coordinator", "http://127.0.0.1:1")
    for args, says in ((("--hours", "7-7"), "--hours"), (("--hours", "night"), "--hours"),
                       (("--upload-cap", "lots"), "--upload-cap"), (("--upload-cap", "0"), "--upload-cap")):
        r = hearth_here(tmp_path, "contribute", *url, *args)
        assert r.code == 2 and says in r.stderr, (args, r)
    r = hearth_here(tmp_path, "contribute", *url, "--radius", "galaxy")
    assert r.code == 2 and "galaxy" in r.stderr, r


def test_link_url_and_backoff() -> None:
    assert link_url("http://10.0.0.5:8080/") == "ws://10.0.0.5:8080/v1/workers/link"
    assert link_url("https://coord.example") == "wss://coord.example/v1/workers/link"
    delays = [BACKOFF_FIRST_S]
    for _ in range(12):
        delays.append(next_delay(delays[-1]))
    assert delays[:3] == [0.5, 1.0, 2.0] and max(delays) == BACKOFF_MAX_S == delays[-1]
