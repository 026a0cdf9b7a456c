from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from hearth.errors import HearthError
from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.trust import PeerNotPaired, TrustStore
from hearth.tunnel.wireguard import tunnel_address


def peer(tmp: Path, name: str) -> PairingInfo:
    key = NodeIdentity.load_or_create(tmp / name).public_key
    return PairingInfo(name, b64(key), b64(os.urandom(32)), tunnel_address(key), ("10.77.0.2:51820",))


def test_add_find_seen_remove(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    den, attic = peer(tmp_path, "den"), peer(tmp_path, "attic")
    store.add(den, b"\x01" * 32, now=1.0)
    store.add(attic, b"\x02" * 32, now=2.0)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.info.name for p in store.all()] == ["den", "attic"]
    assert store.find("den").info == den and store.find(attic.node_id).info == attic
    store.seen(den.node_id, now=5.0)
    assert store.find("den").last_seen == 5.0 and store.find("attic").last_seen is None
    assert store.by_identity_key(den.identity_key) is not None
    store.add(den, b"\x03" * 32, now=9.0)  # pairing again replaces
    assert len(store.all()) == 2 and store.find("den").paired_at == 9.0
    assert store.find("den").secret_bytes == b"\x03" * 32
    assert "secret" not in store.find("den").public() and store.find("den").secret not in json.dumps(store.find("den").public())
    assert store.remove("den").info == den
    with pytest.raises(PeerNotPaired, match="attic"):
        store.remove("den")


def test_a_damaged_store_is_reported(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text('[{"info": {"name": "x"}}]')
    with pytest.raises(HearthError, match="damaged"):
        store.all()


def test_concurrent_seen_notes_never_bring_back_an_unpaired_peer(tmp_path: Path) -> None:
    """A node notes peers as seen while `hearth unpair` runs in another process: under the store's
    lock the removal always sticks."""
    import multiprocessing

    store = TrustStore(tmp_path)
    den, attic = peer(tmp_path, "den"), peer(tmp_path, "attic")
    store.add(den, b"\x01" * 32)
    store.add(attic, b"\x02" * 32)
    ctx = multiprocessing.get_context("fork")
    noter = ctx.Process(target=_note_seen_many, args=(tmp_path, den.node_id, attic.node_id))
    noter.start()
    store.remove("den")
    noter.join(60)
    assert noter.exitcode == 0
    assert [p.info.name for p in store.all()] == ["attic"]


def _note_seen_many(home: Path, *node_ids: str) -> None:
    store = TrustStore(home)
    for i in range(300):
        store.seen(node_ids[i % len(node_ids)])


def test_a_peer_is_found_by_its_host_name_too(tmp_path: Path) -> None:
    """A peer pairs as its node's name ("den") and also tells its host name: `unpair` takes either,
    a name beating another peer's host name, and peers paired before host names travelled still load."""
    store = TrustStore(tmp_path)
    den = replace(peer(tmp_path, "den"), hostname="box-17")
    attic = replace(peer(tmp_path, "attic"), hostname="den")  # another machine whose host name is "den"
    store.add(den, b"\x01" * 32)
    store.add(attic, b"\x02" * 32)
    assert store.find("box-17").info == den and store.find("den").info == den
    rows = json.loads(store.path.read_text())
    del rows[0]["info"]["hostname"]
    store.path.write_text(json.dumps(rows))
    assert store.find("den").info.hostname == "" and store.remove("attic").info == attic
    with pytest.raises(PeerNotPaired):
        store.find("box-17")
