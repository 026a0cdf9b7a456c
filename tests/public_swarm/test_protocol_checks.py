"""Spot-checks through the two protocol state machines (issue 11): an Offer with `check` is answered
by one Checked with a rank and gap per checked token, and by nothing else; a plain job is never
answered by a Checked. In memory through the real codec (protocol_kit.Link), no sockets."""

from __future__ import annotations

from hearth.public_swarm.protocol import messages as m
from hearth.public_swarm.protocol.actions import CloseCode, JobAccepted, JobChecked, JobOffered
from tests.public_swarm.protocol_kit import DIGEST, Link, offer


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
