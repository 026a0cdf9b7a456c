"""`hearth pull`, `hearth models`, `hearth models show`, `hearth rm`: the model store."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.common import JsonOpt, out, progress, settings, store
from hearth.errors import InvalidRequest

models_app = typer.Typer(help="List, inspect and remove stored models.", invoke_without_command=True)


def pull(
    spec: Annotated[str, typer.Argument(help="Catalogue alias, http(s) URL, or path to a .gguf file.")],
    name: Annotated[str | None, typer.Option(help="Store it under this name.")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 of the file.")] = None,
) -> None:
    """Download or import a model into the store (resumes, verifies the hash)."""
    from hearth.models.pull import pull as do_pull

    config = settings()
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise InvalidRequest("--sha256 takes 64 hexadecimal characters.")
    with progress() as bar:
        task = bar.add_task(f"pulling {spec}", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        manifest = do_pull(store(config), spec, name=name, sha256=sha256, progress=update)
    out.print(f"[green]✓[/] {manifest.name}  {manifest.size / 1e6:.1f} MB  sha256:{manifest.digest[:12]}")


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    catalogue: Annotated[bool, typer.Option("--catalogue", help="List what can be pulled instead.")] = False,
) -> None:
    """List stored models."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings()
    if catalogue:
        _catalogue(as_json)
        return
    stored = store(config).all()
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


def _catalogue(as_json: bool) -> None:
    from hearth.models.catalogue import CATALOGUE

    rows: list[dict[str, Any]] = [{"alias": e.alias, "family": e.family, "description": e.description,
                                   "quant": e.quant, "params_b": e.params_b, "source": e.package or e.hf_repo,
                                   "files": list(e.files)} for e in CATALOGUE.values()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("alias", "description", "quant", "source", "files")
    for r in rows:
        table.add_row(str(r["alias"]), str(r["description"]), str(r["quant"]), str(r["source"]), str(len(r["files"])))
    out.print(table)


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="Stored model name or alias.")],
    as_json: JsonOpt = False,
    template: Annotated[bool, typer.Option("--template", help="Print the whole chat template.")] = False,
) -> None:
    """Print the facts read from a model's GGUF header."""
    from hearth.models.facts import cached_facts
    from hearth.models.pull import resolve

    models = store(settings())
    name, _ = resolve(models, model)
    facts = cached_facts(models, name)
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


def rm(model: Annotated[str, typer.Argument(help="Stored model name.")]) -> None:
    """Remove a model from the store (a running `hearth serve` that has it loaded unloads it within a second)."""
    from hearth.models.pull import remove

    removed = remove(store(settings()), model)
    out.print(f"Removed {removed.name} ({removed.size / 1e6:.1f} MB).")
