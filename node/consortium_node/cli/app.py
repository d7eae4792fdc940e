"""The `consortium` command: the root typer app, command registration, and the error policy.

Error policy: any failure a user can cause (bad flag, missing key file, unreachable node,
rejected transaction) prints ONE line `error: ...` on stderr and exits non-zero (2 for usage
errors, 1 otherwise, 130 on Ctrl-C) — never a traceback. Set CONSORTIUM_DEBUG=1 to get the
traceback of an unexpected error.

To add a command, write it in its own module here and register it below."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from consortium_node.client.errors import ClientError
from consortium_node.crypto import KeyFileError

from . import (
    backup,
    bench,
    ceremony,
    ceremony_cluster,
    chain,
    context,
    contract,
    gov,
    keys,
    query,
    tx,
    up,
)


def _err(message: str) -> None:
    line = " ".join(message.split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()


class _OneLineErrors(TyperGroup):
    """Root group whose `main` turns every error into one stderr line and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = _run(self, args, prog_name or "consortium", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code


def _run(
    group: TyperGroup,
    args: Sequence[str] | None,
    prog_name: str,
    complete_var: str | None,
    **extra: Any,
) -> int:
    try:
        rv = TyperGroup.main(
            group,
            args=args,
            prog_name=prog_name,
            complete_var=complete_var,
            standalone_mode=False,
            **extra,
        )
        return rv if isinstance(rv, int) else 0
    except typer.TyperException as e:  # typer's (vendored click) usage and param errors
        code = int(getattr(e, "exit_code", 1) or 1)
        if type(e).__name__ == "NoArgsIsHelpError":
            sys.stderr.write(e.format_message().rstrip() + "\n")
            return code
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _err(_negative_number(e) or e.format_message() + hint)
        return code
    except typer.Abort:
        _err("aborted")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except (ClientError, KeyFileError) as e:  # user errors: the SDK's and key files'
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1
    except Exception as e:
        if os.environ.get("CONSORTIUM_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set CONSORTIUM_DEBUG=1 for a traceback)")
        return 1


_NUMBER = re.compile(r"-\d+(\.\d*)?")


def _negative_number(e: typer.TyperException) -> str | None:
    """The parser reads a token like `-5` as an option name ("No such option: -5"); where the
    user meant a number, say what is wrong with it."""
    name = getattr(e, "option_name", None)
    if type(e).__name__ != "NoSuchOption" or not isinstance(name, str):
        return None
    if not _NUMBER.fullmatch(name):
        return None
    ctx = getattr(e, "ctx", None)
    where = f" of '{ctx.command_path}'" if ctx is not None else ""
    return (
        f"{name}: the arguments{where} take no negative numbers (heights, nonces and "
        "amounts are >= 0); to pass a text value that starts with '-', put '--' before it"
    )


def _quiet_broken_pipe() -> None:
    # stdout's reader went away (e.g. `| head`); don't let the interpreter complain at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


app = typer.Typer(
    name="consortium",
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        try:
            v = importlib.metadata.version("consortium")
        except importlib.metadata.PackageNotFoundError:
            v = "unknown"
        sys.stdout.write(f"consortium {v}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    tls_dir: Annotated[
        str | None,
        typer.Option(
            "--tls-dir",
            help="TLS directory (ca.pem, client.pem, client.key) for --endpoint nodes "
            "(default: $CONSORTIUM_TLS_DIR, else ~/.consortium/tls if present; --data-dir "
            "brings its own).",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Context of ~/.consortium/contexts.yaml (endpoint, TLS directory, key) "
            "(default: $CONSORTIUM_CONTEXT, else the file's current).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Client of a consortium chain: keys, transactions, queries, status, load generation.

    Node: --endpoint HOST:PORT, $CONSORTIUM_ENDPOINT, or --data-dir DIR of 'consortium up'."""
    if tls_dir is not None:
        os.environ["CONSORTIUM_TLS_DIR"] = tls_dir
    if context is not None:
        os.environ["CONSORTIUM_CONTEXT"] = context


app.add_typer(keys.app, name="keys")
app.add_typer(tx.app, name="tx")
app.add_typer(query.app, name="query")
app.add_typer(context.app, name="context")
app.add_typer(gov.app, name="gov")
app.add_typer(contract.app, name="contract")
app.add_typer(backup.app, name="backup")
ceremony_cluster.register(ceremony.app)  # `ceremony contribute-from-cluster`
app.add_typer(ceremony.app, name="ceremony")
app.command("status")(chain.status)
app.command("blocks")(chain.blocks)
app.command("bench")(bench.bench)
app.command("up")(up.up)
app.command("demo")(up.demo)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point (`consortium`)."""
    command = typer.main.get_command(app)
    sys.exit(command.main(args=argv, prog_name="consortium", standalone_mode=False))
