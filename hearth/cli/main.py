"""`hearth`: the command line. Only this layer turns HearthError into exit codes and colour."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from hearth import __version__
from hearth.errors import HearthError, InsecureBind, InvalidRequest, Stopped
from hearth.settings import Settings, load_settings
from hearth.units import digits

app = typer.Typer(name="hearth", help="Run large open LLMs on the machines you already own.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="List, inspect and remove stored models.", invoke_without_command=True)
app.add_typer(models_app, name="models")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


RadiusOpt = Annotated[str, typer.Option(
    help="How far a model may reach when it does not fit: 'local' (this machine), 'household' "
         "(also LAN nodes) or 'trusted' (also peers paired with `hearth pair`).")]
PoolOpt = Annotated[bool, typer.Option("--pool", help="Split the model across household nodes even if it fits here.")]
PeerOpt = Annotated[list[str] | None, typer.Option("--peer", help="A household node HOST:PORT that mDNS cannot reach.")]
MaxMemOpt = Annotated[str | None, typer.Option(help="Most memory hearth may use on this machine, e.g. 12G.")]


def _policy(settings: Settings, radius: str, pool: bool, peer: list[str] | None, max_memory: str | None) -> Any:
    from hearth.orchestrator.engines import PoolPolicy
    from hearth.rpc_pool.node import load_static_peers
    from hearth.units import parse_size

    if radius not in ("local", "household", "trusted"):
        raise InvalidRequest(f"--radius {radius!r}: choose 'local', 'household' or 'trusted' (public comes later).")
    if pool and radius == "local":
        raise InvalidRequest("--pool and --radius local contradict each other.")
    statics = [_check_peer(p) for p in peer or []] + load_static_peers(settings.home)
    cap = parse_size(max_memory) if max_memory else None
    return PoolPolicy(radius=radius, force=pool, static_peers=tuple(statics), max_memory=cap)


def _settings(**overrides: Any) -> Settings:
    import logging

    from pydantic import ValidationError

    from hearth.settings import check_home

    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid setting: {_validation_line(exc)}") from exc
    check_home(settings.home)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    return settings


def _validation_line(exc: Any) -> str:
    """pydantic's many-line report as one line: `port (HEARTH_PORT='eleven'): Input should be ...`."""
    parts = []
    for e in exc.errors():
        field = ".".join(str(x) for x in e["loc"]) or "settings"
        shown = "" if field == "api_key" else f"={e.get('input')!r}"  # never echo a secret
        parts.append(f"{field} (HEARTH_{field.upper()}{shown}): {e['msg']}")
    return "; ".join(parts)


def _progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), console=err, transient=True)


def _store(settings: Settings) -> Any:
    from hearth.models.store import ModelStore

    return ModelStore(settings.models_dir)


# -- run ------------------------------------------------------------------------------------
def _split_model_prompt(first: str | None, second: str | None, settings: Settings) -> tuple[str, str | None]:
    """`hearth run [MODEL] [PROMPT]`: a lone argument is a model if one is known by that name."""
    if first is not None and second is not None:
        return first, second
    if first is None:
        return settings.default_model, None
    from hearth.models.catalogue import lookup

    store = _store(settings)
    try:
        known = lookup(first) is not None or store.get(first) is not None
    except InvalidRequest:
        known = False
    return (first, None) if known else (settings.default_model, first)


@app.command()
def run(
    model: Annotated[str | None, typer.Argument(
        help="Model alias or stored name (default: the embedded model).", show_default=False)] = None,
    prompt: Annotated[str | None, typer.Argument(
        help="Prompt; without it, an interactive chat.", show_default=False)] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", "-n", min=1, help="Most tokens to generate.")] = None,
    temperature: Annotated[float, typer.Option(
        min=0.0, max=2.0, help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling.")] = 0.95,
    seed: Annotated[int | None, typer.Option(min=0, max=2**32 - 1, help="Sampling seed.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (text, token counts, tokens/s).")] = False,
    radius: RadiusOpt = "household",
    pool: PoolOpt = False,
    peer: PeerOpt = None,
    max_memory: MaxMemOpt = None,
) -> None:
    """Run a model: reply to PROMPT and exit, or chat interactively."""
    from hearth.cli.chat import interactive, one_shot
    from hearth.ggml.native import check_rpc_backend
    from hearth.orchestrator.engines import EnginePool

    settings = _settings()
    policy = _policy(settings, radius, pool, peer, max_memory)
    check_rpc_backend()
    name, text = _split_model_prompt(model, prompt, settings)
    if text is None and not sys.stdin.isatty():
        text = _text(sys.stdin.buffer.read(), "standard input")
    for what, given in (("the prompt", text), ("--system", system)):
        if given is not None:
            _text(given, what)
    if text is not None and not text.strip():
        raise InvalidRequest("The prompt is empty; give some text to reply to.")
    sampling: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                "seed": seed, "stop": []}
    engines = EnginePool(settings, policy=policy)
    if text is None:
        interactive(engines, name, system, sampling, out, err)
    else:
        one_shot(engines, name, text, system, sampling, as_json, out, err)


def _text(value: str | bytes, what: str) -> str:
    """Text from the command line or a pipe, which may hold bytes that are not UTF-8 (Python
    keeps them as lone surrogates); refuse them plainly rather than fail deep inside."""
    try:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        return data.decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise InvalidRequest(f"{what.capitalize()} is not valid UTF-8 text (bad byte at position {exc.start}); "
                             "check the terminal's or the file's encoding.") from None


# -- serve ----------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loop_factory() -> Any:
    """uvloop when present: it halves the server's CPU per streamed token."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default 11435).")] = None,
    api_key: Annotated[str | None, typer.Option(
        help="Bearer key clients must send; required beyond loopback. Visible to other users of this "
             "machine (in `ps`): prefer --api-key-file or HEARTH_API_KEY.", show_default=False)] = None,
    api_key_file: Annotated[Path | None, typer.Option(
        help="Read the bearer key from this file (its first line; keep it 0600).",
        envvar="HEARTH_API_KEY_FILE", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="Load this model at start-up (default: on first request).")] = None,
    radius: RadiusOpt = "household",
    pool_: PoolOpt = False,
    peer: PeerOpt = None,
    max_memory: MaxMemOpt = None,
) -> None:
    """Serve an OpenAI- and Ollama-compatible endpoint on this machine.

    The bearer key comes from HEARTH_API_KEY, --api-key-file or --api-key (others can read it in `ps`)."""
    import asyncio

    from hearth.ggml.native import check_rpc_backend
    from hearth.net.pump import listening_socket
    from hearth.net.webserve import stop_cleanly_on_sigterm, web_server
    from hearth.orchestrator.engines import EnginePool
    from hearth.server.app import create_app

    if api_key is not None and api_key_file is not None:
        raise InvalidRequest("--api-key and --api-key-file both give the key; give one.")
    if api_key_file is not None:
        api_key = _read_key_file(api_key_file)
    settings = _settings(host=host, port=port, api_key=api_key)
    if not _is_loopback(settings.host) and settings.api_key is None:
        raise InsecureBind(
            f"Refusing to serve on {settings.host} without an API key: anyone on the network could "
            "use this machine. Pass --api-key-file (or set HEARTH_API_KEY), or bind to 127.0.0.1."
        )
    if settings.api_key is not None and not settings.api_key.get_secret_value().strip():
        raise InvalidRequest("The API key is empty; choose a non-empty key.")
    policy = _policy(settings, radius, pool_, peer, max_memory)
    check_rpc_backend()
    pool = EnginePool(settings, policy=policy)
    api = create_app(settings, pool)
    server = web_server(api, settings, settings.host)
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        raise HearthError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}. Is another "
                          "`hearth serve` running? Stop it or choose another --port.") from exc
    port = sock.getsockname()[1]

    async def main() -> None:
        if model:
            with err.status(f"Loading {model}…"):
                await pool.load(model)
        err.print(f"hearth {__version__} serving on http://{settings.host}:{port} "
                  f"(OpenAI base URL http://{settings.host}:{port}/v1)")
        await server.serve(sockets=[sock])

    stop_cleanly_on_sigterm("hearth serve")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass


def _read_key_file(path: Path) -> str:
    """The key is the file's first line, surrounding whitespace stripped (files end in a newline)."""
    import stat

    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read(4096)
    except OSError as exc:
        raise InvalidRequest(f"--api-key-file {path}: cannot read it ({exc.strerror or exc}).") from exc
    try:
        key = raw.decode("utf-8").splitlines()[0].strip() if raw.strip() else ""
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"--api-key-file {path}: the key must be UTF-8 text.") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        err.print(f"[yellow]warning:[/] {escape(str(path))} can be read by other users; `chmod 600` it.")
    return key


# -- models ---------------------------------------------------------------------------------
@app.command()
def pull(
    spec: Annotated[str, typer.Argument(help="Catalogue alias, http(s) URL, or path to a .gguf file.")],
    name: Annotated[str | None, typer.Option(help="Store it under this name.")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 of the file.")] = None,
) -> None:
    """Download or import a model into the store (resumes, verifies the hash)."""
    from hearth.models.pull import pull as do_pull

    settings = _settings()
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise InvalidRequest("--sha256 takes 64 hexadecimal characters.")
    with _progress() as progress:
        task = progress.add_task(f"pulling {spec}", total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        manifest = do_pull(_store(settings), spec, name=name, sha256=sha256, progress=update)
    out.print(f"[green]✓[/] {manifest.name}  {manifest.size / 1e6:.1f} MB  sha256:{manifest.digest[:12]}")


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    catalogue: Annotated[bool, typer.Option("--catalogue", help="List what can be pulled instead.")] = False,
) -> None:
    """List stored models."""
    if ctx.invoked_subcommand is not None:
        return
    from hearth.models.catalogue import CATALOGUE

    settings = _settings()
    if catalogue:
        rows: list[dict[str, Any]] = [{"alias": e.alias, "family": e.family, "description": e.description,
                                       "quant": e.quant,
                 "params_b": e.params_b, "source": e.package or e.hf_repo, "files": list(e.files)}
                for e in CATALOGUE.values()]
        if as_json:
            out.print_json(json.dumps(rows))
            return
        table = Table("alias", "description", "quant", "source", "files")
        for r in rows:
            table.add_row(str(r["alias"]), str(r["description"]), str(r["quant"]), str(r["source"]),
                          str(len(r["files"])))
        out.print(table)
        return
    stored = _store(settings).all()
    if as_json:
        out.print_json(json.dumps([m.to_json() | {"size": m.size, "digest": m.digest} for m in stored]))
        return
    if not stored:
        out.print("No models stored yet. `hearth run` imports the embedded default; "
                  "`hearth models --catalogue` lists what can be pulled.")
        return
    table = Table("name", "size", "digest", "files", "source")
    for m in stored:
        table.add_row(m.name, f"{m.size / 1e6:.1f} MB", m.digest[:12], str(len(m.files)), m.source)
    out.print(table)


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="Stored model name or alias.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    template: Annotated[bool, typer.Option("--template", help="Print the whole chat template.")] = False,
) -> None:
    """Print the facts read from a model's GGUF header."""
    from hearth.models.facts import cached_facts
    from hearth.models.pull import resolve

    settings = _settings()
    store = _store(settings)
    name, _ = resolve(store, model)
    facts = cached_facts(store, name)
    if as_json:
        out.print_json(json.dumps(facts.to_json() | {"model": name}))
        return
    table = Table("fact", "value", show_header=False)
    rows = [
        ("model", name), ("architecture", facts.architecture), ("name", facts.name),
        ("quantization", facts.quantization), ("parameters", f"{facts.n_params / 1e6:.1f} M"),
        ("file size", f"{facts.file_bytes / 1e6:.1f} MB"), ("layers", str(facts.n_layers)),
        ("embedding size", str(facts.n_embd)), ("heads / kv heads", f"{facts.n_head} / {facts.n_head_kv}"),
        ("context length", str(facts.context_length)),
        ("bytes per layer", f"{facts.bytes_per_layer / 1e6:.2f} MB (largest)"),
        ("embedding tensor", f"{facts.embedding_bytes / 1e6:.2f} MB"),
        ("output tensors", f"{facts.output_bytes / 1e6:.2f} MB"),
        ("KV cache per token", f"{facts.kv_bytes_per_token / 1024:.1f} KiB (f16)"),
    ]
    tmpl = facts.chat_template or "(none)"
    rows.append(("chat template", tmpl if template or len(tmpl) <= 80 else tmpl[:77] + "..."))
    for k, v in rows:
        table.add_row(k, escape(v))  # names and templates come from the file
    out.print(table)


@app.command()
def rm(model: Annotated[str, typer.Argument(help="Stored model name.")]) -> None:
    """Remove a model from the store (a running `hearth serve` that has it loaded unloads it within a second)."""
    from hearth.models.catalogue import lookup

    settings = _settings()
    entry = lookup(model)
    removed = _store(settings).remove(entry.alias if entry else model)
    out.print(f"Removed {removed.name} ({removed.size / 1e6:.1f} MB).")


@app.command()
def plan(
    model: Annotated[str, typer.Argument(help="Model alias or stored name.")],
    n_ctx: Annotated[int | None, typer.Option(
        "--n-ctx", min=64, help="Context to plan for (default: setting).")] = None,
    max_memory: MaxMemOpt = None,
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="An imagined machine to plan with, as NAME=SIZE (to ask 'what if').")] = None,
    pool: PoolOpt = False,
    radius: RadiusOpt = "household",
    peer: PeerOpt = None,
    wait: Annotated[float, typer.Option(min=0.0, max=30.0, help="Seconds to listen for household nodes.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show which machines would hold which layers of MODEL, and why.

    The household's nodes are found by mDNS (and --peer); --node adds imagined ones."""
    import asyncio

    from hearth.ggml.native import cpu_device, describe
    from hearth.models.facts import cached_facts
    from hearth.models.pull import resolve
    from hearth.orchestrator.planner import NodeCapacity
    from hearth.orchestrator.planner import plan as make_plan
    from hearth.units import human, parse_size

    settings = _settings()
    store = _store(settings)
    name, _ = resolve(store, model)
    facts = cached_facts(store, name)
    here = describe(cpu_device())
    free = min(here.free, parse_size(max_memory)) if max_memory else here.free
    nodes = [NodeCapacity("local", "this machine", here.name, free, local=True)]
    policy = _policy(settings, radius, pool, peer, max_memory)
    if radius != "local" and (wait > 0 or policy.static_peers or radius == "trusted"):
        found, problems = asyncio.run(_discover(settings, radius == "trusted", wait, list(policy.static_peers)))
        for p in found:
            if p.usable:
                nodes.append(NodeCapacity(p.record.node_id, p.record.name, p.record.devices[0].name,
                                          p.record.free_bytes, endpoint=p.base_url))
        for problem in problems:
            err.print(f"[yellow]skipped[/] {escape(problem)}")
    for spec in node or []:
        label, sep, size = spec.partition("=")
        if not sep or not label.strip():
            raise InvalidRequest(f"--node {spec!r}: write it as NAME=SIZE, e.g. den=16G.")
        nodes.append(NodeCapacity(label.strip(), label.strip(), "CPU", parse_size(size)))
    result = make_plan(facts, name, nodes, n_ctx=n_ctx or settings.n_ctx, force_pool=pool)
    if as_json:
        out.print_json(json.dumps(result.to_json()))
        return
    table = Table("node", "device", "layers", "memory", "reason", title=f"{name}: needs {human(result.needed_bytes)}")
    for a in result.assignments:
        table.add_row(a.node.name, a.node.device, str(a.layers), human(a.bytes), a.reason)
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}")


@app.command()
def node(
    bind: Annotated[str, typer.Option(help="This machine's address to serve on (never 0.0.0.0).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Control API port.")] = 11436,
    name: Annotated[str | None, typer.Option(help="Name shown to the household (default: host name).")] = None,
    max_memory: Annotated[str | None, typer.Option(help="Most memory hearth may use here, e.g. 12G.")] = None,
    peer: Annotated[list[str] | None, typer.Option(help="A static peer HOST:PORT, where mDNS cannot reach.")] = None,
    admit: Annotated[str, typer.Option(
        help="Who may lease memory here: 'household' (anyone on this LAN) or 'paired' (only peers paired "
             "with `hearth pair`, via WireGuard or the sealed tunnel; the LAN sees only discovery).")] = "household",
    cache_size: Annotated[str, typer.Option(
        help="Disk for lessees' RPC weight caches (one folder each, oldest evicted first); 0 turns it off.")] = "2G",
) -> None:
    """Run this machine's agent: advertise it and lend its memory to the household's models."""
    import asyncio
    import re
    import socket

    from hearth.ggml.native import check_rpc_backend
    from hearth.net.webserve import stop_cleanly_on_sigterm
    from hearth.rpc_pool.node import check_bind, run_node
    from hearth.units import parse_size

    settings = _settings()
    address = check_bind(bind)
    label = name or socket.gethostname()
    if not re.fullmatch(r"[\w .'-]{1,63}", label):
        raise InvalidRequest("--name takes 1 to 63 letters, digits, spaces or . ' - _")
    from hearth.pairing.names import remember_node_name

    remember_node_name(settings.home, label)  # `hearth pair` introduces this machine by it
    cap = parse_size(max_memory) if max_memory else None
    cache_cap = parse_size(cache_size)
    statics = [_check_peer(p) for p in peer or []]
    if admit not in ("household", "paired"):
        raise InvalidRequest(f"--admit {admit!r}: choose 'household' or 'paired'.")
    check_rpc_backend()
    err.print(f"hearth node {label} on {address}:{port}, admitting {admit}"
              + (f", at most {max_memory}" if max_memory else ""))
    stop_cleanly_on_sigterm("hearth node")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_node(settings, address, port, label, cap, statics, admit, cache_size=cache_cap))
    except KeyboardInterrupt:
        pass


def _check_peer(spec: str) -> str:
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not digits(port) or not 0 < int(port) < 65536:
        raise InvalidRequest(f"--peer {spec!r}: write it as HOST:PORT, e.g. 192.168.1.20:11436.")
    return spec


async def _discover(settings: Settings, trusted: bool, wait: float, statics: list[str]) -> Any:
    from hearth.ggml.process import local_rpc_version
    from hearth.identity import NodeIdentity
    from hearth.orchestrator.peers import discover
    from hearth.pairing import circle
    from hearth.pairing.trust import TrustStore

    identity = NodeIdentity.load_or_create(settings.home)
    trust = TrustStore(settings.home) if trusted else None
    paired = trust.all() if trust is not None else []
    via_tunnel = bool(paired) and settings.tunnel != "sealed" and circle.interface(settings, identity).exists()
    return await discover(await asyncio.to_thread(local_rpc_version), wait=wait, static=statics,
                          identity=identity, trust=trust, via_tunnel=via_tunnel)


@app.command()
def peers(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    wait: Annotated[float, typer.Option(min=0.0, max=30.0, help="Seconds to listen for mDNS records.")] = 2.0,
    peer: Annotated[list[str] | None, typer.Option(help="A static peer HOST:PORT to ask as well.")] = None,
) -> None:
    """List the circle's nodes: the household's (found by mDNS or given) and paired peers,
    each proven by its key, with its radius (local / trusted) and state."""
    from hearth.pairing.trust import TrustStore
    from hearth.rpc_pool.node import load_static_peers
    from hearth.units import human

    settings = _settings()
    statics = [_check_peer(p) for p in peer or []] + load_static_peers(settings.home)
    paired = TrustStore(settings.home).all()
    found, problems = asyncio.run(_discover(settings, True, wait, statics))
    answered = {p.record.node_id for p in found}
    missing = [t for t in paired if t.node_id not in answered]
    if as_json:
        out.print_json(json.dumps({
            "peers": [p.to_json() for p in found]
                     + [{**t.public(), "radius": "trusted", "state": "unreachable"} for t in missing],
            "problems": problems}))
        return
    table = Table("name", "node id", "address", "radius", "free", "rpc", "state")
    for p in found:
        state = ("full" if p.record.full else "ready") if p.usable else (p.problem or "unverified")
        table.add_row(p.record.name, p.record.node_id, f"{p.address}:{p.record.port}", p.radius,
                      human(p.record.free_bytes), str(p.record.rpc), state)
    for t in missing:
        table.add_row(t.info.name, t.node_id, t.info.tunnel_address, "trusted", "-", "-", "unreachable")
    out.print(table if found or missing else
              "No peers found. Run `hearth node --bind ADDR` on the other machines, or pair one with `hearth pair`.")
    for problem in problems:
        err.print(f"[yellow]skipped[/] {escape(problem)}")


def _source_address(host: str) -> str:
    """This machine's address on the way to `host`; on a LAN without routes, its one LAN address
    (a clear error naming --bind when there is none or several)."""
    from hearth.pairing.addresses import lan_address

    return lan_address(host)


_T = TypeVar("_T")


def _until_signal(main: Coroutine[Any, Any, _T], what: str, clean_exit: tuple[int, ...] = ()) -> _T:
    """Run `main` until it ends or SIGINT/SIGTERM arrives; a signal cancels it, so its `finally`
    blocks close sockets and mDNS records, then the command stops with one line: exit 128 + the
    signal's number, or 0 for signals in `clean_exit`."""
    import signal

    async def guarded() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        got: list[int] = []

        def stop(signum: int) -> None:
            got.append(signum)
            if task is not None:
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await main
        except asyncio.CancelledError:
            if not got:
                raise
            name = signal.Signals(got[0]).name
            if got[0] in clean_exit:
                err.print(f"{what} stopped ({name}).")
                raise typer.Exit(0) from None
            raise Stopped(what, got[0]) from None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    return asyncio.run(guarded())


def _host_port(spec: str, option: str, default_port: int) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = spec, str(default_port)
    if not host or not digits(port) or not 0 < int(port) < 65536:
        raise InvalidRequest(f"{option} {spec!r}: write it as HOST:PORT, e.g. 192.168.1.20:{default_port}.")
    return host.strip("[]"), int(port)


@app.command()
def pair(
    code: Annotated[str | None, typer.Argument(
        help="The code the other machine printed; without it, print a code and wait.", show_default=False)] = None,
    to: Annotated[str | None, typer.Option(help="The waiting machine's HOST:PORT, where mDNS cannot reach.")] = None,
    via: Annotated[str | None, typer.Option(
        help="Meet through a rendezvous HOST:PORT both machines reach (`hearth rendezvous`).")] = None,
    bind: Annotated[str | None, typer.Option(
        help="Address to wait on (default: this machine's LAN address).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to wait on.")] = 11437,
    name: Annotated[str | None, typer.Option(
        help="Name the peer will know this machine by (default: the name `hearth node` last ran under with "
             "this HEARTH_HOME, else the host name).")] = None,
    node_port: Annotated[int, typer.Option(min=1, max=65535, help="This machine's `hearth node` port.")] = 11436,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to compare the verifier (scripts).")] = False,
    wait: Annotated[float, typer.Option(min=0.0, max=60.0, help="Seconds to look for the code's machine.")] = 5.0,
) -> None:
    """Pair with another machine by a short code, so it joins your trusted radius.

    One machine runs `hearth pair` and reads out the code; the other runs `hearth pair CODE`.
    Both show three words: they must match on both screens. SIGINT or SIGTERM stops the
    waiting (exit 130 or 143) and the code is gone with it."""
    from hearth.identity import NodeIdentity
    from hearth.pairing import circle
    from hearth.pairing.codes import parse_code
    from hearth.pairing.exchange import PairingFailed
    from hearth.pairing.names import NAME_RE, default_label
    from hearth.pairing.trust import TrustStore
    from hearth.rpc_pool.node import check_bind
    from hearth.tunnel.wireguard import tunnel_address

    settings = _settings()
    label = name or default_label(settings.home)
    if not NAME_RE.fullmatch(label):
        raise InvalidRequest("--name takes 1 to 63 letters, digits, spaces or . ' - _")
    if to and via:
        raise InvalidRequest("--to and --via are two ways to reach the other machine; give one.")
    identity = NodeIdentity.load_or_create(settings.home)
    meet_at = _host_port(via, "--via", 11438) if via else None
    if code is None:
        address = check_bind(bind or _source_address(meet_at[0] if meet_at else "224.0.0.251"))
        result = _until_signal(_pair_host(settings, identity, label, address, port, node_port, meet_at),
                               "hearth pair")
    else:
        nameplate, normal = parse_code(code)
        target = _host_port(to, "--to", 11437) if to else None
        result = _until_signal(_pair_guest(settings, identity, label, nameplate, normal, target, meet_at,
                                           node_port, wait, bind), "hearth pair")
    peer = result.peer
    out.print(f"Verifier: [bold]{result.verifier}[/]  (the other screen must show the same three words)")
    if not yes and not typer.confirm("Do both screens show these words?", default=False, err=True):
        raise InvalidRequest("Not paired: the verifier was not confirmed.")
    trust = TrustStore(settings.home)
    taken = {p.info.tunnel_address: p.info.name for p in trust.all() if p.node_id != peer.node_id}
    taken[tunnel_address(identity.public_key)] = "this machine"
    if peer.tunnel_address in taken:  # addresses come from identity keys: 1 in 65534 per pair
        owner = taken[peer.tunnel_address]
        raise PairingFailed(f"{peer.name}'s tunnel address {peer.tunnel_address} is already {owner}'s; one of "
                            f"them needs a new identity (move {settings.home / 'identity'} away).")
    trust.add(peer, result.secret)
    out.print(f"[green]✓[/] paired with {escape(peer.name)} ({peer.node_id}), tunnel address {peer.tunnel_address}")
    try:
        if circle.choose(settings) == "wireguard":
            wg = circle.bring_up(settings, identity, trust.all())
            out.print(f"WireGuard {wg.name} {wg.address} now has {len(trust.all())} peer(s).")
            return
    except HearthError as exc:
        err.print(f"[yellow]WireGuard:[/] {escape(exc.message)}")
    out.print("Trusted pooling with this peer uses the sealed tunnel (no WireGuard here).")


async def _pair_host(settings: Settings, identity: Any, label: str, address: str, port: int, node_port: int,
                     meet_at: tuple[str, int] | None) -> Any:
    import secrets
    import time
    from dataclasses import replace

    from hearth.pairing import circle
    from hearth.pairing.codes import make_code, parse_code
    from hearth.pairing.exchange import PairingHost
    from hearth.pairing.names import hostname_label
    from hearth.pairing.rendezvous import meet
    from hearth.pairing.transport import host_session, serve_host

    nameplate = 1 + secrets.randbelow(999)  # short to read out; codes allow up to 9999
    code = make_code(nameplate)
    me = replace(circle.my_info(settings, identity, label, address, node_port), hostname=hostname_label())
    host = PairingHost(parse_code(code)[1], nameplate, me, now=time.time())
    out.print(f"Pairing code: [bold]{code}[/]   (one use, expires in 5 minutes)")
    via = f" --via {meet_at[0]}:{meet_at[1]}" if meet_at else ""
    out.print(f"On the other machine run: hearth pair {code}{via}")
    if meet_at is not None:
        reader, writer, _ = await meet(meet_at[0], meet_at[1], nameplate, "host")
        try:
            return await host_session(host, reader, writer)
        finally:
            writer.close()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_host(host, address, port, ready))
    advertising: asyncio.Task[Any] | None = None
    try:
        listening = asyncio.create_task(ready.wait())
        await asyncio.wait([task, listening], return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if not task.done() and not ipaddress.ip_address(address).is_loopback:
            from hearth.discovery.mdns import PairingAdvertiser
            from hearth.discovery.records import PairingRecord

            record = PairingRecord(nameplate, label, address, port)
            advertising = asyncio.create_task(asyncio.to_thread(PairingAdvertiser, record))
            await asyncio.shield(advertising)  # a signal meanwhile must not lose the record unclosed
        err.print(f"waiting on {address}:{port}…")
        return await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if advertising is not None:
            made = (await asyncio.gather(advertising, return_exceptions=True))[0]
            if not isinstance(made, BaseException):
                await asyncio.to_thread(made.close)


async def _pair_guest(settings: Settings, identity: Any, label: str, nameplate: int, code: str,
                      target: tuple[str, int] | None, meet_at: tuple[str, int] | None, node_port: int,
                      wait: float, bind: str | None) -> Any:
    from dataclasses import replace

    from hearth.pairing import circle
    from hearth.pairing.exchange import PairingFailed, PairingGuest
    from hearth.pairing.names import hostname_label
    from hearth.pairing.rendezvous import meet
    from hearth.pairing.transport import guest_session, join

    def me(toward: str) -> Any:
        info = circle.my_info(settings, identity, label, bind or _source_address(toward), node_port)
        return replace(info, hostname=hostname_label())

    if meet_at is not None:
        guest = PairingGuest(code, nameplate, me(meet_at[0]))
        reader, writer, _ = await meet(meet_at[0], meet_at[1], nameplate, "guest", first=guest.start())
        try:
            return await guest_session(guest, reader, writer)
        finally:
            writer.close()
    if target is None:
        from hearth.discovery.mdns import find_pairing_host

        found = await asyncio.to_thread(find_pairing_host, nameplate, wait, bind)
        if found is None:
            raise PairingFailed(f"No machine on this network waits with code number {nameplate}; "
                                "check the code, or give --to HOST:PORT.")
        target = (found.address, found.port)
    return await join(PairingGuest(code, nameplate, me(target[0])), *target)


@app.command()
def unpair(peer: Annotated[str, typer.Argument(help="The paired peer's name, host name or node id.")]) -> None:
    """Revoke a paired peer: its leases here end and its WireGuard peer goes, within a second."""
    import time

    from hearth.identity import NodeIdentity
    from hearth.pairing import circle
    from hearth.pairing.trust import TrustStore

    settings = _settings()
    removed = TrustStore(settings.home).remove(peer)
    wg = circle.interface(settings, NodeIdentity.load_or_create(settings.home))
    try:
        if wg.exists():
            # A running node ends the peer's leases first (their sockets close through the tunnel),
            # then drops the WireGuard peer; without a node, drop it here.
            deadline = time.monotonic() + 0.5
            while any(p.public_key == removed.info.wireguard_key for p in wg.peers()) and time.monotonic() < deadline:
                time.sleep(0.05)
            wg.remove_peer(removed.info.wireguard_key)
    except (OSError, RuntimeError) as exc:
        err.print(f"[yellow]could not update WireGuard {wg.name}:[/] {exc}")
    out.print(f"Unpaired {escape(removed.info.name)} ({removed.node_id}).")


@app.command()
def rendezvous(
    bind: Annotated[str, typer.Option(help="Address both machines can reach (never 0.0.0.0).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 11438,
) -> None:
    """Let two machines that cannot see each other pair through this one (it never sees the key).

    SIGTERM stops it with exit 0 (a service asked to stop); SIGINT with 130."""
    import signal

    from hearth.pairing.rendezvous import Rendezvous
    from hearth.rpc_pool.node import check_bind

    address = check_bind(bind)

    async def main() -> None:
        server = Rendezvous(address, port)
        await server.start()
        err.print(f"hearth rendezvous on {address}:{server.port}")
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    _until_signal(main(), "hearth rendezvous", clean_exit=(signal.SIGTERM,))


@app.command()
def version() -> None:
    """Print hearth's version."""
    out.print(__version__)


def main() -> None:
    try:
        app()
    except Stopped as exc:  # asked to stop: not an error
        err.print(exc.message)
        sys.exit(exc.exit_code)
    except HearthError as exc:
        err.print("[bold red]error:[/]", escape(exc.message))
        sys.exit(exc.exit_code)
    except OSError as exc:  # the machine refused (permissions, disk full): say what and where
        where = f": {exc.filename}" if exc.filename else ""
        err.print("[bold red]error:[/]", escape(f"{exc.strerror or exc}{where}"))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
