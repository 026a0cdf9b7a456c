"""Argument handling of every command, in this process (tests/cli/inprocess.py): malformed input
gets one clear line on stderr and the documented exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.inprocess import hearth_here


@pytest.mark.parametrize("args, code, says", [
    (["run", "nope-model", "hi"], 3, "not in the store or the catalogue"),
    (["run", "qwen2.5-72b", "hi"], 3, "hearth pull qwen2.5-72b"),
    (["run", "hi", "--max-tokens", "-1"], 2, "max-tokens"),
    (["run", "hi", "--temperature", "9"], 2, "temperature"),
    (["run", "hi", "--seed", "x"], 2, "seed"),
    (["run", "  "], 2, "prompt is empty"),
    (["models", "show", "nope"], 3, "nope"),
    (["rm", "nope"], 3, "not in the store"),
    (["pull", "ftp://example.invalid/x.gguf"], 5, "only http"),
    (["pull", "x", "--sha256", "xyz"], 2, "64 hexadecimal"),
    (["pull", "no-such-alias"], 3, "not a catalogue alias"),
    (["frobnicate"], 2, "No such command"),
    (["pair", "seven-honey-acre"], 2, "not a pairing code"),
    (["pair", "7-honey"], 2, "not a pairing code"),
    (["pair", "7-honey-notaword"], 2, "not a pairing code"),
    (["pair", "7-honey-acre", "--to", "host:notaport"], 2, "HOST:PORT"),
    (["pair", "7-honey-acre", "--to", "h:1", "--via", "h:2"], 2, "give one"),
    (["pair", "--bind", "0.0.0.0"], 2, "every interface"),
    (["pair", "--name", "bad\nname"], 2, "--name"),
    (["pair", "7-honey-acre", "--to", "127.0.0.1:1"], 7, "Cannot reach"),
    (["unpair", "nobody"], 3, "not paired"),
    # str.isdigit() accepts '²', which int() refuses: found crashing `--peer h:²` with a traceback.
    (["pair", "7-honey-acre", "--to", "h:²"], 2, "HOST:PORT"),
    (["run", "hi", "--peer", "h:²"], 2, "HOST:PORT"),
    (["rendezvous", "--bind", "0.0.0.0"], 2, "every interface"),
    (["run", "hi", "--radius", "everywhere"], 2, "'machine', 'household', 'trusted', 'public'"),
    # The public radius exists now; without a coordinator it says which setting to give.
    (["run", "hi", "--radius", "public"], 2, "HEARTH_COORDINATOR"),
    (["run", "hi", "--radius", "public", "--max-price", "cheap"], 2, "--max-price"),
    (["serve", "--radius", "public"], 2, "HEARTH_COORDINATOR"),
    (["contribute", "--coordinator", "http://127.0.0.1:9", "--radius", "public"], 2, "is for requests"),
    (["run", "hi", "--radius", "machine", "--pool"], 2, "contradict"),
    (["plan", "smollm2-135m", "--radius", "local", "--pool"], 2, "contradict"),
    (["node", "--admit", "anyone"], 2, "--admit"),
    (["node", "--bind", "0.0.0.0"], 2, "every interface"),
    (["node", "--name", "x" * 64], 2, "--name"),
    (["node", "--max-memory", "lots"], 2, "not a size"),
    (["serve", "--host", "0.0.0.0"], 2, "without an API key"),
    (["serve", "--api-key", "k", "--api-key-file", "/nonexistent"], 2, "give one"),
    (["serve", "--api-key-file", "/nonexistent/key"], 2, "cannot read it"),
    (["peers", "--peer", "nohost"], 2, "HOST:PORT"),
    (["plan", "nope-model"], 3, "nope-model"),
])
def test_bad_input_gets_one_clear_line_and_its_exit_code(tmp_path: Path, args: list[str], code: int,
                                                         says: str) -> None:
    r = hearth_here(tmp_path, *args, HEARTH_TUNNEL="sealed")
    assert r.code == code and says in r.stderr, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout


def test_bad_settings_are_reported(tmp_path: Path) -> None:
    r = hearth_here(tmp_path, "serve", HEARTH_PORT="eleven")
    assert r.code == 2 and "Invalid setting" in r.stderr and "port" in r.stderr


def test_an_api_key_setting_is_never_echoed(tmp_path: Path) -> None:
    r = hearth_here(tmp_path, "serve", HEARTH_API_KEY="sekrit-value", HEARTH_MAX_BODY_BYTES="many")
    assert r.code == 2 and "sekrit-value" not in r.stderr + r.stdout


def test_radius_local_still_works_with_a_deprecation_note(tmp_path: Path) -> None:
    """--radius local was 'this machine'; it now reads --radius machine, and the old spelling stays."""
    old = hearth_here(tmp_path, "plan", "smollm2-135m", "--radius", "local", "--json", "--max-memory", "4G")
    new = hearth_here(tmp_path, "plan", "smollm2-135m", "--radius", "machine", "--json", "--max-memory", "4G")
    assert old.code == new.code == 0, (old.stderr, new.stderr)
    assert "--radius local is deprecated; write --radius machine." in old.stderr
    assert "deprecated" not in new.stderr
    assert old.stdout == new.stdout and '"pooled": false' in new.stdout


def test_version_and_help(tmp_path: Path) -> None:
    from hearth import __version__

    assert hearth_here(tmp_path, "version").stdout.strip() == __version__
    helped = hearth_here(tmp_path, "--help")
    assert helped.code == 0
    for command in ("run", "serve", "pull", "models", "rm", "plan", "node", "peers", "pair", "unpair", "rendezvous"):
        assert f" {command} " in helped.stdout, command
    assert "'machine' (this machine only)" in hearth_here(tmp_path, "run", "--help").stdout


def test_the_radius_setting_is_the_default_and_the_flag_wins(tmp_path: Path) -> None:
    """HEARTH_RADIUS sets the radius when --radius is not given (issue 10: 'settings too')."""
    public = hearth_here(tmp_path, "run", "hi", HEARTH_RADIUS="public")
    assert public.code == 2 and "HEARTH_COORDINATOR" in public.stderr  # it did try the public radius
    flag = hearth_here(tmp_path, "plan", "smollm2-135m", "--json", "--max-memory", "4G", "--radius", "machine",
                       HEARTH_RADIUS="public")
    setting = hearth_here(tmp_path, "plan", "smollm2-135m", "--json", "--max-memory", "4G", HEARTH_RADIUS="machine")
    assert flag.code == setting.code == 0 and flag.stdout == setting.stdout, (flag.stderr, setting.stderr)
    bad = hearth_here(tmp_path, "run", "hi", HEARTH_RADIUS="everywhere")
    assert bad.code == 2 and "HEARTH_RADIUS" in bad.stderr and "everywhere" in bad.stderr
    # contribute serves its own circle: a public setting reads as trusted there, a public flag is refused
    refused = hearth_here(tmp_path, "contribute", "--coordinator", "http://127.0.0.1:9", "--radius", "public")
    assert refused.code == 2 and "is for requests" in refused.stderr
