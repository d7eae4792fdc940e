"""`consortium context ...`: kubeconfig-style contexts for consortia running in a cluster, so
TLS on by default costs a cluster user no flags after one `context from-cluster`.

  from-cluster NAME --consortium C --org O   copy the operator's `<C>-<O>-client` Secret (a TLS
                                             directory: ca.pem, client.pem, client.key) to
                                             ~/.consortium/contexts/NAME/ and add context NAME
                                             (endpoint: the Consortium's status.endpoint); with
                                             the organisation's member key in the Secret
                                             (key.json, spec memberKey) and no --key, that key
                                             is the context's signing key: it can write
  use NAME / list                            pick or list contexts

The contexts file (~/.consortium/contexts.yaml or $CONSORTIUM_CONTEXTS) is the one
`consortium_node.client.discovery.Context` reads; paths in it are relative to the file. The client key
is written 0600 and never printed. Registered by cli/app.py."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from consortium_node.client.discovery import DEFAULT_CONTEXTS, ClientTLS
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.crypto import KeyFileError

app = typer.Typer(no_args_is_help=True, help="Contexts for consortia in a cluster.")

CLIENT_PORT = 7050
TLS_FILES = ("ca.pem", "client.pem", "client.key")
MEMBER_KEY_FILE = "key.json"  # the organisation's member key the operator vouched for


def contexts_file() -> Path:
    return Path(os.environ.get("CONSORTIUM_CONTEXTS") or DEFAULT_CONTEXTS).expanduser()


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"current": None, "contexts": {}}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ClientError(f"cannot read contexts file {path}: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts") or {}, dict):
        raise ClientError(f"contexts file {path}: expected `contexts:` to be a mapping")
    doc.setdefault("contexts", {})
    doc["contexts"] = doc["contexts"] or {}
    return doc


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_context(
    name: str,
    endpoint: str,
    tls_files: Mapping[str, bytes],
    key: Path | None = None,
    path: Path | None = None,
    make_current: bool = True,
) -> Path:
    """Write the TLS directory of context `name` beside the contexts file and add (or replace)
    the context; returns the TLS directory. The files are checked as a TLS directory first, so
    a broken Secret never replaces a working context."""
    if not name or "/" in name or name.startswith("."):
        raise ClientError(f"context name {name!r} must be a plain name (no '/', no leading '.')")
    missing = [f for f in TLS_FILES if not tls_files.get(f)]
    if missing:
        raise ClientError(f"TLS material lacks {', '.join(missing)}")
    member = tls_files.get(MEMBER_KEY_FILE) or None  # checked before anything is written
    if member is not None and key is None:
        try:
            Signer.from_json(member.decode(), "the member key of the Secret")
        except (KeyFileError, UnicodeDecodeError) as e:
            raise ClientError(f"the Secret's {MEMBER_KEY_FILE} is not a key file: {e}") from None
    path = path or contexts_file()
    doc = _load(path)
    tls_dir = path.parent / "contexts" / name
    for f in TLS_FILES:
        _write_atomic(tls_dir / f, tls_files[f], 0o600 if f.endswith(".key") else 0o644)
    ClientTLS.from_dir(tls_dir)  # readable as the client will read it
    entry: dict[str, str] = {"endpoint": endpoint, "tls_dir": f"contexts/{name}"}
    if key is not None:
        entry["key"] = str(key.expanduser().resolve())
    elif member is not None:
        _write_atomic(tls_dir / MEMBER_KEY_FILE, member, 0o600)
        entry["key"] = f"contexts/{name}/{MEMBER_KEY_FILE}"
    doc["contexts"][name] = entry
    if make_current or not doc.get("current"):
        doc["current"] = name
    _write_atomic(path, yaml.safe_dump(doc, sort_keys=True).encode(), 0o600)
    return tls_dir


def _kube_read(
    consortium: str, org: str, namespace: str | None, kube_context: str | None
) -> tuple[dict[str, bytes], str, str | None]:
    """(client Secret entries, namespace, the Consortium's status.endpoint) via the
    kubeconfig (or the in-cluster service account)."""
    import base64

    from kubernetes import client as k8s  # the operator's dependency; only this command needs it
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        try:
            k8s_config.load_kube_config(context=kube_context)  # type: ignore[no-untyped-call]
            every, current = k8s_config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
            chosen = next((c for c in every if c["name"] == kube_context), current)
            ns = namespace or chosen["context"].get("namespace", "default")
        except (ConfigException, TypeError, FileNotFoundError):
            if kube_context is not None:
                raise
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            ns = (
                namespace
                or Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .read_text()
                .strip()
            )
    except (ConfigException, OSError) as e:
        raise ClientError(f"no usable kubeconfig: {' '.join(str(e).split())}") from None
    secret = f"{consortium}-{org}-client"
    try:
        s = k8s.CoreV1Api().read_namespaced_secret(secret, ns)
    except ApiException as e:
        if e.status == 404:
            raise ClientError(
                f"Secret {ns}/{secret} not found: is consortium {consortium!r} running in "
                f"namespace {ns!r} with TLS on, and is {org!r} one of its organisations?"
            ) from None
        raise ClientError(f"reading Secret {ns}/{secret}: {e.status} {e.reason}") from None
    except Exception as e:  # urllib3 connection errors and the like
        raise ClientError(f"cannot reach the cluster: {' '.join(str(e).split())[:200]}") from None
    data = {k: base64.b64decode(v) for k, v in (s.data or {}).items()}
    endpoint = None
    try:
        obj = k8s.CustomObjectsApi().get_namespaced_custom_object(
            "consortium.dev", "v1alpha1", ns, "consortia", consortium
        )
        status = obj.get("status") if isinstance(obj, dict) else None
        endpoint = status.get("endpoint") if isinstance(status, dict) else None
    except Exception:  # the endpoint has a default; the Secret is what matters
        endpoint = None
    return data, ns, endpoint


@app.command("from-cluster")
def from_cluster(
    name: Annotated[str, typer.Argument(help="Name of the new context.")],
    consortium: Annotated[str, typer.Option("--consortium", "-c", help="Consortium name.")],
    org: Annotated[str, typer.Option("--org", "-o", help="Your organisation.")],
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig's)."),
    ] = None,
    kube_context: Annotated[
        str | None, typer.Option("--kube-context", help="kubeconfig context to use.")
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            "-e",
            help="Node address (default: the Consortium's status.endpoint, i.e. its client "
            "Service; use localhost:PORT behind `kubectl port-forward`).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Your signing key file for this context.")
    ] = None,
) -> None:
    """Create context NAME from the operator's client Secret of ORG and make it current."""
    data, ns, status_endpoint = _kube_read(consortium, org, namespace, kube_context)
    ep = endpoint or status_endpoint or f"{consortium}-client.{ns}.svc:{CLIENT_PORT}"
    tls_dir = save_context(name, ep, data, key)
    typer.echo(f"context {name}: {ep}, TLS from Secret {ns}/{consortium}-{org}-client in {tls_dir}")
    if key is None and data.get(MEMBER_KEY_FILE):
        typer.echo(f"signing key: the member key of {org} ({tls_dir / MEMBER_KEY_FILE})")


@app.command("use")
def use(name: Annotated[str, typer.Argument(help="Context to make current.")]) -> None:
    """Make context NAME the current one."""
    path = contexts_file()
    doc = _load(path)
    if name not in doc["contexts"]:
        raise ClientError(f"no context {name!r} in {path}")
    doc["current"] = name
    _write_atomic(path, yaml.safe_dump(doc, sort_keys=True).encode(), 0o600)
    typer.echo(f"current context: {name}")


@app.command("list")
def list_() -> None:
    """List contexts; the current one is marked with *."""
    doc = _load(contexts_file())
    for n, entry in sorted(doc["contexts"].items()):
        mark = "*" if n == doc.get("current") else " "
        typer.echo(f"{mark} {n}\t{(entry or {}).get('endpoint', '')}")
