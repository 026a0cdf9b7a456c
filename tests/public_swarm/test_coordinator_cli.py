"""`hearth coordinator` and `hearth credits` argument handling, in this process (tests/cli/inprocess.py):
every bad option is one clear line and exit 2 before anything listens, connects or writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.inprocess import hearth_here
from tests.conftest import free_port


@pytest.mark.parametrize(("args", "says"), [
    (["coordinator", "--bind", "0.0.0.0"], "never listens on every interface"),
    (["coordinator", "--bind", "::"], "never listens on every interface"),
    (["coordinator", "--bind", "den.local"], "is not an IP address"),
    (["coordinator", "--bind", "127.0.0.1", "--db", "mysql://x/y"], "sqlite:///PATH or postgresql+psycopg"),
    (["coordinator", "--bind", "127.0.0.1", "--welcome", "ten"], "--welcome must be credits"),
    (["coordinator", "--bind", "127.0.0.1", "--welcome", "0"], "--welcome must be credits"),
    (["coordinator", "--bind", "127.0.0.1", "--welcome", "1.0000001"], "at most 6 decimals"),
    (["credits"], "pass --coordinator URL"),
    (["credits", "--coordinator", "ftp://x"], "is not http(s)://HOST[:PORT]"),
    (["credits", "--coordinator", "http://x/path"], "is not http(s)://HOST[:PORT]"),
    (["credits", "grant", "abcdefgh", "2.5"], "pass --coordinator URL"),
    (["credits", "grant", "abcdefgh", "lots", "--coordinator", "http://127.0.0.1:1"], "amount must be credits"),
    (["credits", "grant", "NOT AN ACCOUNT", "2", "--coordinator", "http://127.0.0.1:1"], "Invalid grant: account"),
    (["credits", "grant", "abcdefgh", "2", "--key", "short", "--coordinator", "http://127.0.0.1:1"],
     "Invalid grant: key"),
])
def test_bad_arguments_are_one_clear_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    r = hearth_here(tmp_path, *args)
    assert r.code == 2, r
    assert says in r.stderr.replace("\n", " "), r.stderr
    assert not (tmp_path / "coordinator.db").exists()


def test_coordinator_needs_bind(tmp_path: Path) -> None:
    r = hearth_here(tmp_path, "coordinator")
    assert r.code == 2 and "--bind" in r.stderr


def test_hearth_coordinator_setting_is_used_and_a_silent_coordinator_is_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = hearth_here(tmp_path, "credits", HEARTH_COORDINATOR=url)
    assert r.code == 1 and f"Could not reach the coordinator at {url}" in r.stderr.replace("\n", " "), r
