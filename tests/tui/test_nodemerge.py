"""The node list's merge (hearth.tui.nodemerge), without sockets: the status's nodes, the circle's
peers it does not list, and what each node's own agent said."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.discovery.records import DeviceInfo
from hearth.node_api.status import MAX_NODES, NodeView, ServeStatus
from hearth.node_api.wire import LeaseView, NodeStatus
from hearth.tui.nodemerge import WATCH_MAX, Reading, Target, draining, judge, merge, read_view, targets
from hearth.tui.source import Circle, CirclePeer

M = 10**6


def lease(size: int) -> LeaseView:
    return LeaseView(lease_id="abc123", holder="127.0.0.1", bytes=size, used=size, endpoint="127.0.0.1:5000",
                     transport="plain", expires_in=10.0, refused_connections=0)


def node_status(node_id: str = "n-den", budget: int | None = 300 * M, leased: int | None = 0, n_leases: int = 0,
                full: bool = False, max_leases: int = 4) -> NodeStatus:
    return NodeStatus(id=node_id, name="den", v="0.12.0", rpc="3.0.0", port="11436", dev="CPU", full="1" if full
                      else None, budget=budget, leased_bytes=leased, max_leases=max_leases, min_lease_bytes=16 * 2**20,
                      devices=[DeviceInfo("CPU 4 cores", 10**9, 2 * 10**9)], leases=[lease(M)] * n_leases)


def view(node_id: str, state: str = "up", address: str | None = "127.0.0.1:11436", radius: str = "household",
         **more: object) -> NodeView:
    return NodeView.model_validate({"node_id": node_id, "name": node_id, "radius": radius, "state": state,
                                    "address": address, **more})


def test_a_reading_gives_lent_used_free_leases_rtt_and_the_device() -> None:
    shown = read_view(view("n-den", lent_bytes=2 * 10**9, free_bytes=10**9),
                      Reading(node_status(budget=300 * M, leased=40 * M, n_leases=2), 3.0))
    assert (shown.lent_bytes, shown.used_bytes, shown.free_bytes) == (300 * M, 40 * M, 260 * M)
    assert (shown.leases, shown.rtt_ms, shown.device, shown.state) == (2, 3.0, "CPU 4 cores", "up")


def test_no_answer_is_unreachable_but_a_node_the_server_lost_stays_lost() -> None:
    assert read_view(view("a", "holding", rtt_ms=2.0), Reading(problem="refused")).state == "unreachable"
    assert read_view(view("a", "holding", rtt_ms=2.0), Reading(problem="refused")).rtt_ms is None
    assert read_view(view("a", "lost"), Reading(problem="refused")).state == "lost"
    assert read_view(view("a", "unreachable"), Reading(node_status("a"), 1.0)).state == "up"
    assert read_view(view("a", "holding"), Reading(node_status("a"), 1.0)).state == "holding"
    assert read_view(view("a", "holding"), None) == view("a", "holding")


def test_draining_is_full_with_room_left_not_full_for_want_of_room() -> None:
    assert draining(node_status(full=True))  # room and slots left, yet full: its policy refuses all
    assert not draining(node_status(full=False))
    assert not draining(node_status(full=True, leased=300 * M))  # no memory left
    assert not draining(node_status(full=True, n_leases=4))  # no slot left
    assert not draining(node_status(full=True, budget=None))  # an older node: cannot tell
    assert read_view(view("n-den"), Reading(node_status(full=True), 1.0)).state == "draining"
    assert read_view(view("n-den", "draining"), Reading(node_status(), 1.0)).state == "up"


def test_an_answer_from_another_node_is_a_problem() -> None:
    target = Target("n-den", "den", "127.0.0.1:11436")
    assert judge(target, node_status("n-den"), 1.4).rtt_ms == 1.0
    wrong = judge(target, node_status("n-other"), 1.4)
    assert wrong.status is None and wrong.problem is not None and "another node" in wrong.problem


def test_targets_are_the_status_nodes_then_reachable_circle_peers_once_with_an_address() -> None:
    status = ServeStatus(version="1", nodes=[
        view("me", radius="machine", address="127.0.0.1:11436"), view("a", address="192.0.2.1:11436"),
        view("b", address=None), view("c", address="no port here")])
    circle = Circle((CirclePeer("a", "a", "household", "192.0.2.9:1", "ready"),
                     CirclePeer("me", "me", "household", "127.0.0.1:11436", "ready"),
                     CirclePeer("d", "d", "trusted", "[fd00::5]:11436", "full"),
                     CirclePeer("e", "e", "trusted", "fd00::6", "unreachable")))
    assert targets(status, circle) == [Target("a", "a", "192.0.2.1:11436"), Target("d", "d", "[fd00::5]:11436")]
    assert targets(None, None) == []


@given(st.integers(0, 40), st.integers(0, 40))
def test_targets_are_bounded(n_status: int, n_circle: int) -> None:
    status = ServeStatus(version="1", nodes=[view(f"s{i}", address=f"192.0.2.{i}:1") for i in range(n_status)])
    circle = Circle(tuple(CirclePeer(f"c{i}", f"c{i}", "household", f"192.0.3.{i}:1", "ready")
                          for i in range(n_circle)))
    found = targets(status, circle)
    assert len(found) == min(WATCH_MAX, n_status + n_circle)
    assert len({t.node_id for t in found}) == len(found)


def test_circle_peers_the_status_does_not_list_are_added_in_the_circles_words() -> None:
    circle = Circle((CirclePeer("attic", "a", "household", "192.0.2.1:11436", "ready", 5 * M),
                     CirclePeer("cabin", "x", "trusted", "fd00::6", "unreachable"),
                     CirclePeer("yurt", "y", "trusted", "192.0.2.3:11436", "not verified")))
    listed = merge([view("a", "holding")], circle, {})
    assert [(v.node_id, v.name, v.radius, v.state) for v in listed] == [
        ("a", "a", "household", "holding"), ("x", "cabin", "trusted", "unreachable"), ("y", "yurt", "trusted", "unknown")]
    alone = merge([], circle, {"a": Reading(node_status("a", budget=100 * M, leased=10 * M), 2.0)})
    assert alone[0].lent_bytes == 100 * M and alone[0].free_bytes == 90 * M and alone[0].address == "192.0.2.1:11436"


sizes = st.one_of(st.none(), st.integers(0, 2**50))
states = st.sampled_from(["up", "holding", "draining", "lost", "unreachable", "unknown"])
readings = st.one_of(
    st.none(), st.builds(Reading, problem=st.text(min_size=1, max_size=20)),
    st.builds(lambda b, used, n, full, rtt: Reading(node_status("k", b, used, n, full), rtt),
              sizes, sizes, st.integers(0, 4), st.booleans(), st.floats(0, 10_000)))


@given(st.lists(st.tuples(states, sizes, readings), max_size=40), st.lists(st.booleans(), max_size=20))
def test_merge_keeps_every_listed_node_in_order_and_its_figures_sound(
        rows: list[tuple[str, int | None, Reading | None]], reachable: list[bool]) -> None:
    nodes = [view(f"k{i}", state, lent_bytes=lent) for i, (state, lent, _) in enumerate(rows)]
    circle = Circle(tuple(CirclePeer(f"p{i}", f"p{i}", "household", f"192.0.2.{i}:1", "ready" if r else "gone")
                          for i, r in enumerate(reachable)))
    got = {f"k{i}": r for i, (_, _, r) in enumerate(rows) if r is not None}
    listed = merge(nodes, circle, got)
    assert [v.node_id for v in listed] == ([n.node_id for n in nodes] + [p.node_id for p in circle.peers])[:MAX_NODES]
    for shown in listed:
        NodeView.model_validate(shown.model_dump())  # still a valid wire NodeView
        reading = got.get(shown.node_id)
        if reading is not None and reading.status is not None and reading.status.budget is not None:
            assert shown.lent_bytes == reading.status.budget
            if shown.used_bytes is not None:
                assert shown.free_bytes == max(0, reading.status.budget - shown.used_bytes)
        if reading is not None and reading.status is None:
            assert shown.state in ("lost", "unreachable") and shown.rtt_ms is None
