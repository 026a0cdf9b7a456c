"""Spot-checks through the two protocol state machines (issue 11): an Offer with `check` is answered
by one Checked with a rank and gap per checked token, and by nothing else; a plain job is never
answered by a Checked. In memory through the real codec (protocol_kit.Link), no sockets."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from hearth.public_swarm.protocol import messages as m
from hearth.public_swarm.protocol.actions import CloseCode, JobAccepted, JobChecked, JobOffered
from tests.public_swarm.protocol_kit import DIGEST, MODEL, Link, offer


def _check_offer(job_id: str = "chk-1", ids: tuple[int, ...] = (10, 11, 12)) -> m.Offer:
    plain = offer(job_id)
    return m.Offer(job_id=job_id, model_digest=DIGEST, request=plain.request,
                   check=m.CheckRequest(token_ids=list(ids), top_k=5))


def _accepted(check: m.Offer) -> Link:
    link = Link()
    link.handshake()
    link.from_coord(link.coord.offer(check, link.now))
    assert link.worker_events[-1] == JobOffered(check)
    link.from_worker(link.worker.accept(check.job_id, link.now))
    assert link.coord_events[-1] == JobAccepted(check.job_id)
    return link


def _close_code(link: Link) -> CloseCode:
    closes = link.closes()
    assert len(closes) == 1, closes
    return closes[0].code


def test_a_spot_check_is_answered_by_one_checked() -> None:
    link = _accepted(_check_offer())
    link.from_worker(link.worker.checked("chk-1", 21, [0, 1, 5], [0.0, 0.25, 7.5], "Rayleigh", link.now))
    assert link.coord_events[-1] == JobChecked("chk-1", 21, (0, 1, 5), (0.0, 0.25, 7.5), "Rayleigh")
    assert link.coord.jobs == {} and link.worker.jobs == {} and link.closes() == []
    # answered once: a second answer from the worker's side sends nothing
    assert link.worker.checked("chk-1", 21, [0, 0, 0], [0.0, 0.0, 0.0], "", link.now) == []


def test_a_checked_of_the_wrong_length_closes_the_link() -> None:
    link = _accepted(_check_offer())
    frame = m.Checked(job_id="chk-1", prompt_tokens=3, ranks=[0, 0], gaps=[0.0, 0.0], text="x")
    link.coord_events.extend(link.coord.receive(frame, link.now))
    assert _close_code(link) is CloseCode.COUNT_MISMATCH


def test_tokens_or_finished_for_a_spot_check_close_the_link() -> None:
    link = _accepted(_check_offer())
    frame = m.Tokens(job_id="chk-1", seq=0, text="a", token_ids=[1])
    link.coord_events.extend(link.coord.receive(frame, link.now))
    assert _close_code(link) is CloseCode.UNEXPECTED
    link = _accepted(_check_offer())
    fin = m.Finished(job_id="chk-1", finish_reason="stop", prompt_tokens=1, completion_tokens=0, receipt="x")
    link.coord_events.extend(link.coord.receive(fin, link.now))
    assert _close_code(link) is CloseCode.UNEXPECTED


def test_a_checked_for_a_plain_job_closes_the_link_and_the_worker_never_sends_one() -> None:
    link = _accepted(offer("job-1"))
    assert link.worker.checked("job-1", 1, [0], [0.0], "a", link.now) == []  # not a check: nothing sent
    frame = m.Checked(job_id="job-1", prompt_tokens=1, ranks=[0], gaps=[0.0], text="a")
    link.coord_events.extend(link.coord.receive(frame, link.now))
    assert _close_code(link) is CloseCode.UNEXPECTED


def test_checked_frames_are_bounded() -> None:
    good = m.encode(m.Checked(job_id="j", prompt_tokens=1, ranks=[0], gaps=[0.0], text=""))
    assert isinstance(m.decode(good), m.Checked)
    for bad in (good.replace('"gaps":[0.0]', '"gaps":[0.0,1.0]'),       # one gap per rank
                good.replace('"ranks":[0]', '"ranks":[65]'),              # rank past MAX_CHECK_TOP_K
                good.replace('"gaps":[0.0]', '"gaps":[-1.0]'),           # gaps are never negative
                good.replace('"ranks":[0]', '"ranks":[]').replace('"gaps":[0.0]', '"gaps":[]')):
        try:
            m.decode(bad)
        except m.MessageInvalid:
            continue
        raise AssertionError(f"accepted {bad}")
    too_many = m.CheckRequest.model_fields["token_ids"].metadata
    assert any(getattr(x, "max_length", None) == m.MAX_CHECK_TOKENS for x in too_many)


def _replay_offer(job_id: str = "rep-1", ids: tuple[int, ...] = (10, 11, 12)) -> m.Offer:
    plain = offer(job_id)
    request = plain.request.model_copy(update={"sampling": m.Sampling(temperature=0.8, seed=5)})
    return m.Offer(job_id=job_id, model_digest=DIGEST, request=request,
                   check=m.CheckRequest(token_ids=list(ids), top_k=40, replay=True))


def test_a_replay_is_answered_with_one_pick_per_token() -> None:
    link = _accepted(_replay_offer())
    link.from_worker(link.worker.checked("rep-1", 7, [0, 0, 1], [0.0, 0.0, 0.5], "abc", link.now, [10, 11, 13]))
    assert link.coord_events[-1] == JobChecked("rep-1", 7, (0, 0, 1), (0.0, 0.0, 0.5), "abc", (10, 11, 13))
    assert not link.closes()


def test_a_replay_answered_without_picks_and_a_plain_check_with_them_close_the_link() -> None:
    link = _accepted(_replay_offer())
    link.from_worker(link.worker.checked("rep-1", 7, [0, 0, 0], [0.0, 0.0, 0.0], "abc", link.now))
    assert _close_code(link) is CloseCode.UNEXPECTED
    link = _accepted(_check_offer())
    link.from_worker(link.worker.checked("chk-1", 7, [0, 0, 0], [0.0, 0.0, 0.0], "abc", link.now, [1, 2, 3]))
    assert _close_code(link) is CloseCode.UNEXPECTED


def test_replay_frames_are_checked() -> None:
    plain = offer("rep-2")
    request = plain.request.model_copy(update={"sampling": m.Sampling(temperature=0.8)})
    with pytest.raises(ValidationError, match="needs one"):  # a replay re-runs a seed, so it names one
        m.Offer(job_id="rep-2", model_digest=DIGEST, request=request,
                check=m.CheckRequest(token_ids=[1], top_k=40, replay=True))
    with pytest.raises(ValidationError, match="one per rank"):
        m.Checked(job_id="rep-2", prompt_tokens=1, ranks=[0, 0], gaps=[0.0, 0.0], text="", picks=[1])
    for bad in ("", "has space", "x" * 81, "semi;colon", 7):
        with pytest.raises(m.MessageInvalid):
            m.decode(_hello_with(sampler=bad))
    hello = m.decode(_hello_with(sampler="hearth-k40.1/llama-cpp-python-0.3.36"))
    assert isinstance(hello, m.Hello) and hello.sampler == "hearth-k40.1/llama-cpp-python-0.3.36"
    assert isinstance(old := m.decode(_hello_with()), m.Hello) and old.sampler is None  # older workers name none


def _hello_with(**fields: object) -> str:
    hello = json.loads(m.encode(m.Hello(v=1, node_id="a" * 16, public_key="A" * 43, signature="B" * 86,
                                        models=[MODEL], max_jobs=2)))
    hello.pop("sampler", None)
    return json.dumps({**hello, **fields})
