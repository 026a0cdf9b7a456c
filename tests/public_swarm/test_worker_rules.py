"""The public worker's pure decisions (no sockets, no model): hours, upload cap, request -> engine
fields, framing engine tokens into protocol frames, hardware text and the registration body."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.public_swarm.coordinator.wire import Hardware
from hearth.public_swarm.hardware import clean, cpu_model, describe_hardware
from hearth.public_swarm.protocol.messages import (
    MAX_CHARS_PER_TOKEN,
    MAX_IDS_PER_FRAME,
    ChatMessage,
    JobRequest,
    ModelOffer,
    Resume,
    Sampling,
    Tokens,
)
from hearth.public_swarm.runner_rules import (
    OFF_HOURS,
    UPLOAD_CAP,
    Admission,
    Framer,
    Hours,
    UploadBudget,
    admission,
    engine_fields,
    parse_cap,
    parse_hours,
)
from hearth.public_swarm.worker import registration


def test_hours_wrap_midnight_and_exclude_the_end() -> None:
    night = parse_hours("22-07")
    assert [h for h in range(24) if h in night] == [0, 1, 2, 3, 4, 5, 6, 22, 23]
    day = parse_hours(" 9 - 17 ")
    assert [h for h in range(24) if h in day] == list(range(9, 17))
    assert all(h in parse_hours("0-24") for h in range(24)) and parse_hours("22-24") == Hours(22, 24)
    assert str(night) == "22:00-07:00"


@pytest.mark.parametrize("bad", ["", "22", "22-", "7-7", "25-3", "3-25", "a-b", "22:00-07:00", "-1-3", "0-0"])
def test_bad_hours_are_refused_with_the_option_named(bad: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_hours(bad)
    assert caught.value.param == "hours" and "--hours" in caught.value.message


@given(st.integers(0, 23), st.integers(0, 24), st.integers(0, 23))
def test_an_hours_window_holds_exactly_its_hours(start: int, end: int, hour: int) -> None:
    if start == end:
        with pytest.raises(InvalidRequest):
            parse_hours(f"{start}-{end}")
        return
    window = parse_hours(f"{start}-{end}")
    span = end - start if end > start else end + 24 - start
    assert (hour in window) == ((hour - start) % 24 < span)


@given(st.text(max_size=12))
def test_hours_parsing_never_fails_otherwise(text: str) -> None:
    try:
        parse_hours(text)
    except InvalidRequest:
        pass


def test_upload_cap_counts_bytes_per_local_day() -> None:
    assert parse_cap("50M") == 50_000_000 and parse_cap("1KiB") == 1024
    assert parse_cap("20") == 20
    for bad in ("lots", "0", "-5M"):
        with pytest.raises(InvalidRequest) as caught:
            parse_cap(bad)
        assert caught.value.param == "upload_cap"
    budget = UploadBudget(cap=10)
    monday, tuesday = datetime.date(2026, 11, 23), datetime.date(2026, 11, 24)
    budget.spend(9, monday)
    assert not budget.exhausted(monday)
    budget.spend(len("é".encode()), monday)
    assert budget.exhausted(monday)
    assert not budget.exhausted(tuesday) and budget.sent == 0


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=30), st.integers(1, 200))
def test_upload_budget_is_the_sum_of_a_days_bytes(spends: list[tuple[int, int]], cap: int) -> None:
    budget = UploadBudget(cap=cap)
    days = [datetime.date(2026, 1, 1) + datetime.timedelta(days=d) for d, _ in spends]
    for day, (_, n) in zip(days, spends, strict=True):
        budget.spend(n, day)
    if spends:
        last = days[-1]
        tail = 0
        for day, (_, n) in zip(reversed(days), reversed(spends), strict=True):
            if day != last:
                break
            tail += n
        assert budget.sent == tail and budget.exhausted(last) == (tail >= cap)


def test_admission_declines_off_hours_then_over_the_cap() -> None:
    at = [datetime.datetime(2026, 11, 23, 12, 0)]
    gate = Admission(hours=parse_hours("22-07"), upload=UploadBudget(cap=4), clock=lambda: at[0])
    assert gate.refusal() == OFF_HOURS
    at[0] = datetime.datetime(2026, 11, 23, 23, 30)
    assert gate.refusal() is None
    gate.sent("héllo")
    assert gate.refusal() == UPLOAD_CAP
    at[0] = datetime.datetime(2026, 11, 24, 1, 0)  # a new day: the cap starts again
    assert gate.refusal() is None
    assert admission(None, None).refusal() is None
    with pytest.raises(InvalidRequest):
        admission("7-7", None)


def test_a_chat_job_maps_to_the_engines_chat_fields() -> None:
    job = JobRequest(messages=[ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi")],
                     sampling=Sampling(temperature=0.7, top_p=0.9, top_k=20, seed=42, stop=["\n\n"]), max_tokens=16)
    assert engine_fields(job) == ("chat", {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "seed": 42, "stop": ["\n\n"], "exact": True})


def test_a_resumed_completion_carries_the_resume_ids_and_text() -> None:
    job = JobRequest(prompt="Once", max_tokens=8, resume=Resume(text=" upon a", token_ids=[5, 6, 7]))
    op, fields = engine_fields(job)
    assert op == "complete" and fields["prompt"] == "Once"
    assert fields["resume"] == [5, 6, 7] and fields["resumed_text"] == " upon a"
    assert "seed" not in fields and fields["exact"] is True and fields["temperature"] == 0.0 and fields["max_tokens"] == 8
    assert "resume" not in engine_fields(JobRequest(prompt="x", max_tokens=2, resume=Resume(text="", token_ids=[])))[1]


def test_text_without_ids_rides_on_the_next_frame() -> None:
    framer = Framer()
    assert framer.push(" held back", ()) == []
    assert framer.push("!", (9,)) == [(" held back!", [9])]
    assert framer.pending == ""


_events = st.lists(st.tuples(st.text(max_size=600), st.lists(st.integers(0, 2**31 - 1), max_size=1100)), max_size=8)


@given(_events)
def test_frames_keep_every_id_and_character_in_order_within_the_bounds(events: list[tuple[str, list[int]]]) -> None:
    framer = Framer()
    frames = [f for text, ids in events for f in framer.push(text, ids)]
    assert "".join(t for t, _ in frames) + framer.pending == "".join(t for t, _ in events)
    assert [i for _, ids in frames for i in ids] == [i for _, ids in events for i in ids]
    for seq, (text, ids) in enumerate(frames):
        assert 1 <= len(ids) <= MAX_IDS_PER_FRAME and len(text) <= MAX_CHARS_PER_TOKEN * len(ids)
        Tokens(job_id="j", seq=seq, text=text, token_ids=ids)  # a valid frame


def test_cpu_model_from_cpuinfo_and_the_hardware_line() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core\x07 Processor\n") == \
        "AMD EPYC 7763 64-Core Processor"
    assert cpu_model("Hardware\t: BCM2835\nModel\t: Raspberry Pi 4\n") == "BCM2835"
    assert cpu_model("") is None
    assert clean("a\x00b\u0085c\ud800 " + "x" * 300) == "abc " + "x" * 124
    hw = Hardware(cpu="AMD EPYC", cores=2, memory_bytes=8_000_000_000)
    assert describe_hardware(hw) == "AMD EPYC, 2 cores, 8.0 GB memory, GPU: none found"


def test_the_registration_carries_the_measured_offers_and_the_hardware() -> None:
    offer = ModelOffer(digest="b" * 64, name="smollm2-135m", params=134_515_008, quant="Q8_0", n_ctx=2048,
                       decode_tps=3e5)
    body = registration([offer], Hardware(cpu="AMD EPYC", cores=2, memory_bytes=1 << 33))
    assert [(m.digest, m.quantization, m.n_params) for m in body.models] == [("b" * 64, "Q8_0", 134_515_008)]
    assert body.models[0].decode_tps == 100_000.0  # the registration's ceiling
    assert body.hardware.cores == 2 and body.name
