"""The report scripts/soak.py writes to docs/reliability.md, from what it sent and saw."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soak import Tally

HEADER_TIMEOUT = 5.0
"""HEARTH_HEADER_TIMEOUT of the soaked server (soak.py sets it)."""


def render(args: argparse.Namespace, tally: Tally, facts: dict[str, Any]) -> str:
    def table(head: str, counts: Counter[str]) -> str:
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"| {head} | count |\n|---|---|\n{rows or '| (none) | 0 |'}"

    closed = sorted(tally.slow_closed_after)
    slow = (f"{len(closed)} closed by the server, median {closed[len(closed) // 2]:.1f} s, longest {closed[-1]:.1f} s"
            if closed else "none closed by the server")
    busy = f"{facts['idle_after']:.1f} s" if facts["idle_after"] is not None else "still busy after 300 s"
    drained = f"{facts['leases_drained']:.1f} s" if facts["leases_drained"] is not None else "NOT within 40 s"
    return f"""# hearth reliability soak

Written by `scripts/soak.py`; rerun it to refresh. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.

Command: `{facts['command']}`

A real `hearth serve` (SmolLM2-135M, n_ctx 2048, HEARTH_HEADER_TIMEOUT={HEADER_TIMEOUT:g}) and a real
`hearth node`, both on loopback with a temporary HEARTH_HOME, for {args.minutes:g} minutes with
{args.workers} concurrent clients, each picking at random (seed {args.seed}) among valid, invalid,
abandoned and slow requests. 429 (queue full) counts as an answer for valid requests; invalid
requests must get a 4xx; abandoned ones are dropped by the client.

## Requests sent, by kind

{table("kind", tally.sent)}

## Responses, by status (or client-side exception)

{table("status", tally.statuses)}

## Error codes in the responses

{table("code", tally.codes)}

## What did not hold

{table("unexpected outcome", tally.unexpected)}

## After the soak

- Slow connections (partial headers, one byte a second): {slow}; {tally.slow_left_open} still open
  after {HEADER_TIMEOUT * 4:g} s.
- `hearth serve` RSS: {facts['rss_start'] / 1024:.0f} MiB at start (model loaded), {facts['rss_end'] / 1024:.0f} MiB
  at the end; engine child {facts['engine_rss_start'] / 1024:.0f} → {facts['engine_rss_end'] / 1024:.0f} MiB; node
  {facts['node_rss_start'] / 1024:.0f} → {facts['node_rss_end'] / 1024:.0f} MiB.
- Engine busy after the last client left: {busy}.
- A normal chat request at the end: {facts['final']}.
- Abandoned leases all expired {drained} after the engine was idle; a new lease then: {facts['final_lease']}.
"""
