"""`consortium keys`: create and inspect Ed25519 client key files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consortium_node.client.keys import Signer

from .common import JsonOpt, console, default_key_path, print_json

app = typer.Typer(help="Client keys (Ed25519).", no_args_is_help=True)


@app.command("new")
def new(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the key file (default: $CONSORTIUM_KEY or "
            "~/.consortium/key.json).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Generate a key pair; write it (mode 0600) and print the public key."""
    path = out if out is not None else default_key_path(None)
    signer = Signer.generate()
    signer.save(path, force=force)
    if json_:
        print_json({"public_key": signer.public_key.hex(), "file": str(path)})
    else:
        console.print(signer.public_key.hex())


@app.command("show")
def show(
    key: Annotated[
        Path | None,
        typer.Argument(help="Key file (default: $CONSORTIUM_KEY or ~/.consortium/key.json)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Print the public key (account address) of a key file."""
    path = key if key is not None else default_key_path(None)
    signer = Signer.load(path)
    if json_:
        print_json({"public_key": signer.public_key.hex(), "file": str(path)})
    else:
        console.print(signer.public_key.hex())
