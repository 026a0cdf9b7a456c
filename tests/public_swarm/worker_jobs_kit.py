"""An in-process coordinator whose worker links the test drives, for the job runner's tests.

The job dispatcher (which offers queued jobs to linked workers) is being built in parallel and is
not merged yet, so the test stands in for it: it offers jobs through the real `LiveLinks` of a real
coordinator app (served by hearth's uvicorn on 127.0.0.1, on a loop in a background thread) and
collects the real CoordinatorSession's job events (JobAccepted, JobTokens, JobFinished, ...) through
`on_event`. Everything else is real: the worker is a `hearth contribute` process with the embedded
model, and a JobFinished only arrives when the session verified the worker's signed receipt.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hearth.net.pump import listening_socket
from hearth.net.webserve import web_server
from hearth.public_swarm.coordinator.app import create_coordinator_app
from hearth.public_swarm.coordinator.links import MAX_LINK_FRAME_BYTES, Link, LiveLinks
from hearth.public_swarm.coordinator.serve import open_books
from hearth.public_swarm.protocol import Action
from hearth.public_swarm.protocol.actions import JobDeclined, JobFailed, JobFinished, JobLost
from hearth.public_swarm.protocol.messages import JobRequest, Offer
from hearth.settings import load_settings
from tests.conftest import HEARTH, REPO, free_port, hearth_env
from tests.public_swarm.worker_proc import stop

T = TypeVar("T")


@contextmanager
def contributor(home: Path, url: str, models: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`hearth contribute --coordinator URL ARGS` with the shared models folder, until the block ends (SIGTERM)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "contribute.log").open("ab") as log:
        proc = subprocess.Popen([*HEARTH, "contribute", "--coordinator", url, *args],
                                env=hearth_env(home, HEARTH_MODELS_DIR=str(models)), stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc
    finally:
        assert stop(proc) == 0, (home / "contribute.log").read_text(errors="replace")[-2000:]
ENDS = (JobFinished, JobFailed, JobDeclined, JobLost)


class Swarm:
    """A coordinator app on 127.0.0.1 with its LiveLinks in reach; the job events by job id."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.events: defaultdict[str, list[Action]] = defaultdict(list)
        self.frames: list[str] = []
        """Every frame the workers sent, as the coordinator received them."""
        self._lock = threading.Lock()
        self.links = LiveLinks(on_event=self._on_event)
        self.ledger, self.registry = open_books(f"sqlite:///{home / 'coordinator.db'}", 10_000_000, print)
        app = create_coordinator_app(self.ledger, self.registry, "operator", self.links)
        self.server = web_server(app, load_settings(home=home), "127.0.0.1", ws="websockets-sansio",
                                 ws_max_size=MAX_LINK_FRAME_BYTES, ws_per_message_deflate=False,
                                 ws_ping_interval=None)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._serving = self.call(self._start())

    async def _start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self.server.serve(sockets=[listening_socket("127.0.0.1", self.port)]))
        while not self.server.started:
            await asyncio.sleep(0.05)
        return task

    def _on_event(self, link: Link, event: Action) -> None:
        job_id = getattr(event, "job_id", None)
        if job_id is not None:
            with self._lock:
                self.events[job_id].append(event)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_linked(self, node_id: str, timeout: float, log: Path) -> Link:
        start = time.monotonic()
        while (link := self.links.get(node_id)) is None:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"worker {node_id} did not link within {timeout} s\n"
                                     + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        receive = link.session.receive_text

        def recording(text: str | bytes, now: float) -> list[Action]:
            self.frames.append(text if isinstance(text, str) else text.decode("utf-8", "replace"))
            return receive(text, now)

        link.session.receive_text = recording  # type: ignore[method-assign]
        return link

    def offer(self, node_id: str, job_id: str, digest: str, request: JobRequest) -> None:
        link = self.links.get(node_id)
        assert link is not None, f"{node_id} is not linked"
        for event in self.call(link.offer(Offer(job_id=job_id, model_digest=digest, request=request))):
            self._on_event(link, event)

    def cancel(self, node_id: str, job_id: str) -> None:
        link = self.links.get(node_id)
        assert link is not None
        self.call(link.perform(link.session.cancel(job_id, time.monotonic())))

    def of(self, job_id: str) -> list[Action]:
        with self._lock:
            return list(self.events[job_id])

    def wait_end(self, job_id: str, timeout: float = 60) -> list[Action]:
        """The job's events up to and including its end (finished, failed, declined, lost)."""
        start = time.monotonic()
        while not any(isinstance(e, ENDS) for e in self.of(job_id)):
            if time.monotonic() - start > timeout:
                raise AssertionError(f"job {job_id} did not end within {timeout} s: {self.of(job_id)[-3:]}")
            time.sleep(0.05)
        return self.of(job_id)

    def close(self) -> None:
        self.server.should_exit = True
        try:
            self.call(self._stop(), timeout=20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.ledger.close()

    async def _stop(self) -> None:
        for link in list(self.links.by_node.values()):
            await link.perform(link.session.close())
        await self._serving
