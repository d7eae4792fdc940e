"""The `consortium` command-line client (typer + rich).

`main` is the console-script entry point; `app` is the typer app (drive it in tests with
`typer.testing.CliRunner().invoke(app, [...])`). Commands: keys, tx, query, status, blocks,
bench — see `app.py` for the registration and the one-line error policy."""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
