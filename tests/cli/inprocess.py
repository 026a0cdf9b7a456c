"""Running `hearth` in this process with Typer's CliRunner, for tests of argument handling only.

The whole path a person's command takes is run (hearth.cli.main.main, which maps errors to exit
codes and one line on stderr); only the process is saved. Tests where the process is the point
(signals, terminals, the engine child) stay in test_cli.py and friends as subprocesses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from hearth.cli.main import main
from tests.conftest import N_CTX


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def hearth_here(home: Path, *args: str, stdin: str | None = None, **env: str) -> Result:
    """`hearth ARGS` in this process, with HEARTH_HOME=home and no other HEARTH_ setting but `env`."""
    settings: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HEARTH_")}
    settings.update(HEARTH_HOME=str(home), HEARTH_N_CTX=str(N_CTX), HEARTH_N_THREADS="2", COLUMNS="200", **env)
    runner = CliRunner()
    with runner.isolation(input=stdin, env=settings) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return Result(code, out.getvalue().decode(), err.getvalue().decode())
