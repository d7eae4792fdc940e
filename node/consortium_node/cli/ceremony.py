"""`consortium ceremony`: the federation genesis ceremony with files (docs/FEDERATION.md).

  init        ceremony.json: chain id, organisations, consensus, genesis parameters, time
  contribute  contribution-ORG.json of an organisation directory (`consortium up --org ORG
              --ceremony-init`), signed by the organisation's admin key
  assemble    genesis.json from the ceremony and every contribution (the one builder)
  sign        genesis-ORG.sig, after checking ORG's part of the genesis against its own
              contribution byte for byte
  verify      the genesis hash and every organisation's signature (what a node checks at start)

A thin layer over the pure consortium_node.provision.ceremony (files in, files out) and, for
`contribute`, consortium_node.localnet's organisation directory. Errors are one line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from consortium_node.crypto import Ed25519Key, KeyFileError
from consortium_node.localnet import ManifestError, org_contribution, org_meta
from consortium_node.provision import ceremony as cer

from .common import JsonOpt, console, fail, print_json

app = typer.Typer(help="The federation genesis ceremony (files only).", no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="File to write.")]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror}") from None


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    except OSError as e:
        raise fail(f"cannot write {path}: {e.strerror}") from None


def _manifest_parts(path: Path) -> tuple[str, list[str], dict[str, Any], dict[str, Any]]:
    """chain id, organisation names, consensus and genesis parameters of a manifest."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise fail(f"cannot read manifest {path}: {e}") from None
    spec = (doc or {}).get("spec") if isinstance(doc, dict) else None
    if not isinstance(spec, dict):
        raise fail(f"{path} must hold one Consortium object with a spec")
    genesis = dict(spec.get("genesis") or {})
    params = {k: v for k, v in genesis.items() if k in cer.PARAMETER_KEYS}
    orgs = [str(o.get("name")) for o in spec.get("organizations") or [] if isinstance(o, dict)]
    return str(spec.get("chainId", "")), orgs, dict(spec.get("consensus") or {}), params


@app.command("init")
def init(
    out: OutOpt = Path("ceremony.json"),
    chain_id: Annotated[
        str | None, typer.Option("--chain-id", help="Chain id of the new chain.")
    ] = None,
    orgs: Annotated[
        list[str] | None,
        typer.Option("--org", help="A member organisation (repeat, in order).", show_default=False),
    ] = None,
    consensus: Annotated[
        str | None, typer.Option("--consensus", "-c", help="bft or raft (default bft).")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Take chain id, organisations, consensus and genesis parameters from a "
            "Consortium manifest (options given override it).",
            show_default=False,
        ),
    ] = None,
    genesis_time: Annotated[
        int | None,
        typer.Option("--genesis-time", help="Genesis time, unix seconds (default: now)."),
    ] = None,
) -> None:
    """Write ceremony.json: what every organisation contributes to."""
    m_chain, m_orgs, m_consensus, m_params = (
        _manifest_parts(manifest) if manifest else ("", [], {}, {})
    )
    cons = dict(m_consensus)
    if consensus is not None:
        cons["type"] = consensus
    cons.setdefault("type", "bft")
    try:
        data = cer.init(
            chain_id or m_chain,
            orgs or m_orgs,
            cons,
            m_params,
            int(time.time()) if genesis_time is None else genesis_time,
        )
    except cer.CeremonyError as e:
        raise fail(str(e)) from None
    _write(out, data)
    console.print(f"ceremony {cer.sha256hex(data)} -> {out}", markup=False)


@app.command("contribute")
def contribute(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", "-d", help="The organisation's directory ('consortium up --org')."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write (default contribution-ORG.json).", show_default=False
        ),
    ] = None,
) -> None:
    """Write the organisation's signed contribution: CA, admin keys, members, validators."""
    meta = org_meta(data_dir)
    try:
        data = org_contribution(data_dir)
    except (cer.CeremonyError, ManifestError, KeyFileError) as e:
        raise fail(str(e)) from None
    org = str((meta or {}).get("organization"))
    path = out or Path(f"contribution-{org}.json")
    _write(path, data)
    console.print(f"contribution of {org} -> {path}", markup=False)


@app.command("assemble")
def assemble(
    ceremony: Annotated[Path, typer.Argument(help="ceremony.json")],
    contributions: Annotated[list[Path], typer.Argument(help="contribution-*.json, any order")],
    out: OutOpt = Path("genesis.json"),
) -> None:
    """Build the genesis from the ceremony and one contribution per organisation."""
    try:
        data = cer.assemble(_read(ceremony), [_read(p) for p in contributions])
    except cer.CeremonyError as e:
        raise fail(str(e)) from None
    _write(out, data)
    console.print(f"genesis {cer.sha256hex(data)} -> {out}", markup=False)


@app.command("sign")
def sign(
    genesis: Annotated[Path, typer.Argument(help="genesis.json")],
    org: Annotated[str, typer.Option("--org", help="The organisation that signs.")],
    contribution: Annotated[
        Path, typer.Option("--contribution", help="The organisation's own contribution.")
    ],
    key: Annotated[Path, typer.Option("--key", "-k", help="One of the organisation's admin keys.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write (default genesis-ORG.sig).", show_default=False
        ),
    ] = None,
    ceremony: Annotated[
        Path | None,
        typer.Option(
            "--ceremony", help="Also check chain id, time, consensus against this ceremony."
        ),
    ] = None,
) -> None:
    """Check ORG's part of the genesis against its contribution, then sign the genesis hash."""
    try:
        signer = Ed25519Key.load(key)
        data = cer.sign(
            _read(genesis),
            org,
            _read(contribution),
            signer,
            _read(ceremony) if ceremony else None,
        )
    except (cer.CeremonyError, KeyFileError) as e:
        raise fail(str(e)) from None
    path = out or Path(f"genesis-{org}.sig")
    _write(path, data)
    console.print(f"{org} signed genesis {cer.sha256hex(_read(genesis))} -> {path}", markup=False)


@app.command("verify")
def verify(
    genesis: Annotated[Path, typer.Argument(help="genesis.json")],
    signatures: Annotated[list[Path], typer.Argument(help="genesis-*.sig, one per organisation")],
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="The genesis hash you were given.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Check the genesis hash and that every organisation in it signed it with its own key."""
    data = _read(genesis)
    try:
        g = cer.verify(data, [_read(p) for p in signatures], sha256)
    except cer.CeremonyError as e:
        raise fail(str(e)) from None
    orgs = [o.name for o in g.organizations]
    digest = cer.sha256hex(data)
    if json_:
        print_json({"genesis": digest, "chain_id": g.chain_id, "signed_by": orgs})
    else:
        console.print(
            f"genesis {digest} of {g.chain_id}: signed by {', '.join(orgs)}", markup=False
        )
