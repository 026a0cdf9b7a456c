"""The interactive chat in a real pseudo-terminal (pexpect), like a person at `hearth run`."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from tests.conftest import hearth_env

pytestmark = pytest.mark.slow


def test_interactive_chat_ctrl_c_stops_a_reply_and_bye_leaves(models_home: Path) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "hearth.cli.main", "run", "--temperature", "0"],
                          env=hearth_env(models_home, COLUMNS="200"), encoding="utf-8", timeout=60)
    try:
        child.expect(">>> ")
        child.sendline("Write a long essay about the history of Rome.")  # ~4000 tokens, greedy
        child.expect("history of Rome.\r\n")  # the terminal's echo of the line
        child.expect(r"\S+ \S+ \S+ \S+ \S+ ")  # a reply is streaming
        child.sendintr()  # Ctrl-C
        child.expect(r"\(stopped\)")
        child.expect(">>> ")  # still in the chat
        child.sendline("/?")
        child.expect("/bye")
        child.expect(">>> ")
        child.sendintr()  # Ctrl-C at the prompt does not leave either
        child.expect("Ctrl \\+ d or /bye")
        child.expect(">>> ")
        child.sendline("/frobnicate")
        child.expect("Unknown command")
        child.expect(">>> ")
        child.sendline("What did I ask you to do first?")
        child.expect(">>> ")  # history went along: a second reply arrives
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
