"""Scripted conversations through the two protocol state machines (hearth.public_swarm.protocol),
wired to each other in memory through the real codec (tests.public_swarm.protocol_kit.Link), with
real Ed25519 node keys and real signed receipts. No sockets: the sessions do no I/O."""

from __future__ import annotations

import dataclasses

from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.protocol import messages as m
from hearth.public_swarm.protocol.actions import (
    Close,
    CloseCode,
    JobAccepted,
    JobDeclined,
    JobFinished,
    JobLost,
    JobOffered,
    JobTokens,
    Registered,
    Send,
    StopJob,
    Welcomed,
)
from hearth.public_swarm.protocol.coordinator import CoordinatorSession, Phase
from hearth.public_swarm.protocol.worker import WorkerPhase, WorkerSession
from tests.public_swarm.protocol_kit import DIGEST, MODEL, NONCE, OTHER, WORKER, Link, offer


def _ready(max_jobs: int = 2) -> Link:
    link = Link(max_jobs=max_jobs)
    link.handshake()
    return link


def _running(job_id: str = "job-1", **kw: object) -> Link:
    link = _ready()
    link.from_coord(link.coord.offer(offer(job_id, **kw), link.now))  # type: ignore[arg-type]
    link.from_worker(link.worker.accept(job_id, link.now))
    return link


def _close_code(actions: list[object]) -> CloseCode:
    closes = [a for a in actions if isinstance(a, Close)]
    assert len(closes) == 1, actions
    return closes[0].code


def test_hello_challenge_offer_accept_tokens_finished() -> None:
    link = _ready()
    reg = [e for e in link.coord_events if isinstance(e, Registered)]
    assert reg == [Registered(WORKER.node_id, WORKER.public_key, (MODEL,), 2)]
    assert link.worker_events == [Welcomed(1.0)]
    job = offer()
    link.from_coord(link.coord.offer(job, link.now))
    assert link.worker_events[-1] == JobOffered(job)
    link.from_worker(link.worker.accept("job-1", link.now))
    for text, ids in (("Ray", [10]), ("leigh ", [11, 12]), ("scattering.", [13])):
        link.from_worker(link.worker.tokens("job-1", text, ids, link.now))
    link.from_worker(link.worker.finish("job-1", "stop", 9, link.now))
    events = link.coord_events[1:]
    assert events[0] == JobAccepted("job-1")
    assert [e.text for e in events if isinstance(e, JobTokens)] == ["Ray", "leigh ", "scattering."]
    done = events[-1]
    assert isinstance(done, JobFinished) and (done.prompt_tokens, done.completion_tokens) == (9, 4)
    receipts.verify(done.receipt, WORKER.public_key, prompt=m.prompt_bytes(job.request),
                    output="Rayleigh scattering.")
    assert link.coord.jobs == {} and link.worker.jobs == {} and link.closes() == []


def test_failover_job_with_resume_data_finishes_and_a_lost_job_hands_back_its_stream() -> None:
    link = _running(resume=m.Resume(text="Ray", token_ids=[10]), max_tokens=3)
    link.from_worker(link.worker.tokens("job-1", "leigh", [11, 12], link.now))
    link.from_worker(link.worker.finish("job-1", "length", 9, link.now))
    assert isinstance(link.coord_events[-1], JobFinished)
    link.from_coord(link.coord.offer(offer("job-2"), link.now))
    link.from_worker(link.worker.accept("job-2", link.now))
    link.from_worker(link.worker.tokens("job-2", "Ray", [10], link.now))
    assert link.coord.close()[:1] == [JobLost("job-2", "Ray", (10,))]


def test_a_silent_worker_is_declared_dead_after_three_heartbeats() -> None:
    link = _running()
    link.from_worker(link.worker.tokens("job-1", "Ray", [10], link.now))
    assert link.coord.tick(1.0) == [Send(m.Ping())]
    assert link.coord.tick(2.9) == [Send(m.Ping())]
    actions = link.coord.tick(3.01)
    assert actions[0] == JobLost("job-1", "Ray", (10,))
    assert _close_code(actions) is CloseCode.PEER_DEAD and link.coord.phase is Phase.CLOSED
    assert link.coord.tick(10) == [] and link.coord.receive(m.Heartbeat(), 10) == []


def test_heartbeats_both_ways_keep_the_link_alive() -> None:
    link = _ready()
    for step in range(1, 40):
        link.now = step * 0.5
        link.from_coord(link.coord.tick(link.now))
        link.from_worker(link.worker.tick(link.now))
    assert link.closes() == [] and link.coord.phase is Phase.READY
    assert any(f == '{"type":"heartbeat"}' for f in link.frames)


def test_the_worker_gives_up_on_a_silent_coordinator_and_stops_its_jobs() -> None:
    link = _running()
    actions = link.worker.tick(3.5)
    assert actions[0] == StopJob("job-1") and _close_code(actions) is CloseCode.PEER_DEAD


def test_handshake_rules() -> None:
    coord = CoordinatorSession(0, nonce=NONCE)
    coord.start()
    assert coord.tick(9) == [] and _close_code(coord.tick(10.5)) is CloseCode.TIMEOUT
    coord = CoordinatorSession(0, nonce=NONCE)
    assert _close_code(coord.receive(m.Heartbeat(), 0)) is CloseCode.UNEXPECTED
    worker = WorkerSession(WORKER, [MODEL], 1, 0)
    assert _close_code(worker.tick(11)) is CloseCode.TIMEOUT
    worker = WorkerSession(WORKER, [MODEL], 1, 0)
    assert _close_code(worker.receive(offer(), 0)) is CloseCode.UNEXPECTED
    worker = WorkerSession(WORKER, [MODEL], 1, 0)
    assert _close_code(worker.receive_text("{", 0)) is CloseCode.MALFORMED


def _hello(identity: object = WORKER, nonce: bytes = NONCE, **over: object) -> m.Hello:
    signer = identity if identity is not None else WORKER
    fields: dict[str, object] = dict(v=1, node_id=WORKER.node_id, public_key=b64.encode(WORKER.public_key),
                                     signature=b64.encode(signer.prove(nonce)),  # type: ignore[attr-defined]
                                     models=[MODEL], max_jobs=1)
    fields.update(over)
    return m.Hello(**fields)  # type: ignore[arg-type]


def test_hello_is_checked() -> None:
    for hello, code in (
        (_hello(), None),
        (_hello(v=2), CloseCode.VERSION),
        (_hello(OTHER), CloseCode.FORGED_IDENTITY),
        (_hello(nonce=b"another nonce"), CloseCode.FORGED_IDENTITY),
        (_hello(OTHER, public_key=b64.encode(OTHER.public_key)), CloseCode.FORGED_IDENTITY),
        (_hello(public_key="A" * 43 + "B"), CloseCode.FORGED_IDENTITY),
    ):
        coord = CoordinatorSession(0, nonce=NONCE)
        actions = coord.receive(hello, 0)
        if code is None:
            assert isinstance(actions[0], Send) and isinstance(actions[0].message, m.Welcome)
            assert _close_code(coord.receive(hello, 0)) is CloseCode.UNEXPECTED  # a second hello
        else:
            assert _close_code(actions) is code, hello


def test_tokens_out_of_order_or_for_an_unknown_job_close_the_link() -> None:
    for seqs in ([1], [0, 0], [0, 2]):
        link = _running()
        actions: list[object] = []
        for seq in seqs:
            actions = link.coord.receive(m.Tokens(job_id="job-1", seq=seq, text="x", token_ids=[1]), 0)
        assert _close_code(actions) is CloseCode.BAD_SEQUENCE
    link = _running()
    assert _close_code(link.coord.receive(m.Tokens(job_id="nope", seq=0, text="x", token_ids=[1]), 0)) \
        is CloseCode.UNKNOWN_JOB
    link = _ready()
    link.from_coord(link.coord.offer(offer(), 0))  # offered, not accepted
    assert _close_code(link.coord.receive(m.Tokens(job_id="job-1", seq=0, text="x", token_ids=[1]), 0)) \
        is CloseCode.UNKNOWN_JOB
    link = _running(max_tokens=2)
    assert _close_code(link.coord.receive(m.Tokens(job_id="job-1", seq=0, text="x", token_ids=[1, 2, 3]), 0)) \
        is CloseCode.OVER_CAPACITY


def _finished(receipt: receipts.Receipt | str, completion_tokens: int = 1, prompt_tokens: int = 9) -> m.Finished:
    text = receipt if isinstance(receipt, str) else receipts.encode(receipt).decode()
    return m.Finished(job_id="job-1", finish_reason="stop", prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, receipt=text)


def _sign(identity: object = WORKER, **over: object) -> receipts.Receipt:
    fields: dict[str, object] = dict(job_id="job-1", model_digest=DIGEST, prompt=m.prompt_bytes(offer().request),
                                     output="Ray", prompt_tokens=9, completion_tokens=1, finished_at=1_700_000_000)
    fields.update(over)
    return receipts.sign_receipt(identity, **fields)  # type: ignore[arg-type]


def test_finished_receipts_are_checked() -> None:
    for finished, code in (
        (_finished(_sign()), None),
        (_finished(_sign(OTHER)), CloseCode.RECEIPT_REFUSED),
        (_finished(_sign(output="Rayleigh")), CloseCode.RECEIPT_REFUSED),
        (_finished(_sign(prompt="another prompt")), CloseCode.RECEIPT_REFUSED),
        (_finished(_sign(job_id="job-2")), CloseCode.RECEIPT_REFUSED),
        (_finished(_sign(model_digest="cd" * 32)), CloseCode.RECEIPT_REFUSED),
        (_finished("{}"), CloseCode.RECEIPT_REFUSED),
        (_finished(dataclasses.replace(_sign(), signature=bytes(64))), CloseCode.RECEIPT_REFUSED),
        (_finished(_sign(), completion_tokens=2), CloseCode.COUNT_MISMATCH),
        (_finished(_sign(completion_tokens=2), completion_tokens=2), CloseCode.COUNT_MISMATCH),
        (_finished(_sign(completion_tokens=2)), CloseCode.COUNT_MISMATCH),
        (_finished(_sign(), prompt_tokens=8), CloseCode.COUNT_MISMATCH),
    ):
        link = _running()
        link.from_worker(link.worker.tokens("job-1", "Ray", [10], 0))
        actions = link.coord.receive(finished, 0)
        if code is None:
            assert isinstance(actions[0], JobFinished)
        else:
            assert actions[0] == JobLost("job-1", "Ray", (10,)), finished
            assert _close_code(actions) is code, finished
            assert not any(isinstance(a, JobFinished) for a in actions)


def test_finished_for_a_job_never_accepted_closes_the_link() -> None:
    link = _ready()
    assert _close_code(link.coord.receive(_finished(_sign()), 0)) is CloseCode.UNKNOWN_JOB


def test_capacity_is_enforced_on_both_sides() -> None:
    link = _ready(max_jobs=1)
    link.from_coord(link.coord.offer(offer("a"), 0))
    assert link.coord.offer(offer("b"), 0) == [JobDeclined("b", "busy")]
    assert link.coord.offer(offer("a"), 0) == [JobDeclined("a", "job_id_in_use")]
    other = m.Offer(job_id="c", model_digest="cd" * 32, request=offer().request)
    assert _close_code(link.worker.receive(other, 0)) is CloseCode.OVER_CAPACITY
    link = _ready(max_jobs=2)
    assert link.coord.offer(other, 0) == [JobDeclined("c", "model_not_held")]
    assert link.worker.receive(other, 0) == [Send(m.Decline(job_id="c", reason="model_not_held"))]


def test_cancel_stops_the_job_and_messages_that_crossed_it_are_ignored() -> None:
    link = _running()
    link.from_coord(link.coord.cancel("job-1", 0))
    assert link.worker_events[-1] == StopJob("job-1")
    assert link.worker.tokens("job-1", "x", [1], 0) == []
    assert link.coord.receive(m.Tokens(job_id="job-1", seq=0, text="x", token_ids=[1]), 0) == []
    assert link.coord.receive(_finished(_sign()), 0) == []
    assert link.worker.receive(m.Cancel(job_id="job-1"), 0) == []
    assert link.closes() == []


def test_an_unanswered_offer_is_cancelled_and_declined() -> None:
    link = Link(heartbeat_s=100)
    link.handshake()
    link.coord.offer(offer(), 0)  # never delivered
    actions = link.coord.tick(10.5)
    assert actions[:2] == [Send(m.Cancel(job_id="job-1")), JobDeclined("job-1", "no_answer")]
    assert link.coord.receive(m.Accept(job_id="job-1"), 11) == []


def test_worker_checks_its_welcome_and_answers_out_of_phase_messages() -> None:
    worker = WorkerSession(WORKER, [MODEL], 1, 0)
    worker.receive(m.Challenge(v=1, nonce=b64.encode(NONCE)), 0)
    assert worker.phase is WorkerPhase.AWAIT_WELCOME
    assert _close_code(worker.receive(m.Welcome(node_id=OTHER.node_id, heartbeat_s=1), 0)) is CloseCode.UNEXPECTED
    worker = WorkerSession(WORKER, [MODEL], 1, 0)
    assert _close_code(worker.receive(m.Challenge(v=9, nonce=b64.encode(NONCE)), 0)) is CloseCode.VERSION
    link = _ready()
    assert _close_code(link.worker.receive(m.Heartbeat(), 0)) is CloseCode.UNEXPECTED
    link = _ready()
    link.from_coord(link.coord.offer(offer(), 0))
    assert _close_code(link.worker.receive(offer(), 0)) is CloseCode.UNEXPECTED


def test_a_malformed_frame_closes_the_coordinator_side_too() -> None:
    link = _running()
    actions = link.coord.receive_text('{"type":"tokens"}', 0)
    assert actions[0] == JobLost("job-1", "", ()) and _close_code(actions) is CloseCode.MALFORMED
    assert "tokens" in actions[-1].reason  # type: ignore[union-attr]
