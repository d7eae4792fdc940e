"""`consortium ceremony contribute-from-cluster`: an organisation's contribution to the genesis
ceremony, exported from the cluster where its operator runs (a federated Consortium with
spec.ceremony) and signed there with the organisation's own admin key; and `consortium
ceremony remote-org`: another organisation's contribution as the spec.organizations[] entry
that describes it as remote (what each cluster adds with spec.genesisFrom).

What it reads, all in the ONE cluster of the organisation (the kubeconfig's context or
--kube-context): the Consortium's status.contributions entry for the organisation (CA, admin
key, member key, validators' node ids and external addresses, which the operator publishes
unsigned), the ceremony.json of the ConfigMap spec.ceremony names (its hash must be the
entry's ceremony id), and the admin key in Secret <consortium>-<org>-admin. It writes the
signed contribution-<org>.json (provision.ceremony.contribute, which re-checks the result).
The admin key never leaves the machine running this command; no other cluster is asked.

Registered on the `consortium ceremony` app by cli/app.py (`register`). Errors are one line."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from consortium_node.client.errors import ClientError
from consortium_node.crypto import Ed25519Key, KeyFileError
from consortium_node.provision import ceremony as cer

from .common import console, fail

GROUP, VERSION, PLURAL = "consortium.dev", "v1alpha1", "consortia"
ADMIN_KEY_FILE = "admin.json"  # the entry of the organisation's admin Secret (operator render)


def _api(kube_context: str | None, namespace: str | None) -> tuple[Any, Any, str]:
    """(CoreV1Api, CustomObjectsApi, namespace) for the kubeconfig context."""
    from kubernetes import client as k8s  # the operator's dependency; only this command needs it
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    try:
        k8s_config.load_kube_config(context=kube_context)  # type: ignore[no-untyped-call]
        every, current = k8s_config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, TypeError) as e:
        raise ClientError(f"no usable kubeconfig: {' '.join(str(e).split())}") from None
    chosen = next((c for c in every if c["name"] == kube_context), current)
    ns = namespace or chosen["context"].get("namespace", "default")
    return k8s.CoreV1Api(), k8s.CustomObjectsApi(), ns


def _read(what: str, call: Any, *args: Any) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return call(*args)
    except ApiException as e:
        if e.status == 404:
            raise ClientError(f"{what} not found") from None
        raise ClientError(f"reading {what}: {e.status} {e.reason}") from None
    except Exception as e:  # urllib3 connection errors and the like
        raise ClientError(f"cannot reach the cluster: {' '.join(str(e).split())[:200]}") from None


def contribution_from_cluster(
    consortium: str, org: str, namespace: str | None, kube_context: str | None
) -> bytes:
    """The signed contribution of `org` (see the module docstring)."""
    core, custom, ns = _api(kube_context, namespace)
    obj = _read(
        f"Consortium {ns}/{consortium}",
        custom.get_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PLURAL,
        consortium,
    )
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    cm_name = (spec.get("ceremony") or {}).get("configMap")
    if not cm_name:
        raise ClientError(f"Consortium {ns}/{consortium} takes part in no ceremony (spec.ceremony)")
    entry = next(
        (c for c in status.get("contributions") or [] if c.get("organization") == org), None
    )
    if entry is None:
        raise ClientError(
            f"Consortium {ns}/{consortium} publishes no contribution of {org} yet "
            "(status.contributions): is it one of its localOrganizations, and are its keys "
            "made? (kubectl get consortium shows what it waits for)"
        )
    cm = _read(f"ConfigMap {ns}/{cm_name}", core.read_namespaced_config_map, cm_name, ns)
    ceremony_json = ((cm.data or {}).get("ceremony.json") or "").encode()
    if cer.sha256hex(ceremony_json) != entry.get("ceremony"):
        raise ClientError(
            f"ConfigMap {ns}/{cm_name}'s ceremony.json is not the ceremony the operator "
            "contributes to (its hash differs): wait for the next status update"
        )
    secret = f"{consortium}-{org}-admin"
    s = _read(f"Secret {ns}/{secret}", core.read_namespaced_secret, secret, ns)
    raw = (s.data or {}).get(ADMIN_KEY_FILE)
    if raw is None:
        raise ClientError(f"Secret {ns}/{secret} has no {ADMIN_KEY_FILE}")
    signer = Ed25519Key.from_json(base64.b64decode(raw).decode(), f"Secret {ns}/{secret}")
    validators = [
        cer.Validator(str(v["name"]), bytes.fromhex(str(v["nodeId"])), str(v["address"]))
        for v in entry.get("validators") or []
    ]
    # an organisation the ceremony does not list joins the chain it made (the operator
    # publishes its contribution only after adopting that chain's genesis)
    joining = org not in cer.parse_ceremony(ceremony_json).organizations
    if joining and not status.get("genesisHash"):
        raise ClientError(
            f"{org} is not an organisation of the ceremony in ConfigMap {ns}/{cm_name}, and "
            f"Consortium {ns}/{consortium} has no genesis yet to join"
        )
    return cer.contribute(
        ceremony_json,
        org,
        str(entry.get("ca", "")).encode(),
        [bytes.fromhex(k) for k in entry.get("admins") or []],
        [bytes.fromhex(k) for k in entry.get("members") or []],
        validators,
        signer,
        joining,
    )


def register(app: typer.Typer) -> None:
    """Add `contribute-from-cluster` and `remote-org` to the `consortium ceremony` app
    (cli/app.py)."""
    app.command("contribute-from-cluster")(contribute_from_cluster)
    app.command("remote-org")(remote_org)


def remote_entry(contribution: bytes) -> dict[str, Any]:
    """The spec.organizations[] entry of a remote organisation, from its contribution (its
    signature checked): name, validator count, remote {caCert, admins, validators}."""
    c = cer.parse_contribution(contribution)
    return {
        "name": c.organization,
        "validators": len(c.validators),
        "remote": {
            "caCert": c.ca_pem.decode("ascii"),
            "admins": sorted(a.hex() for a in c.admins),
            "validators": [
                {"name": v.name, "nodeId": v.node_id.hex(), "address": v.address}
                for v in c.validators
            ],
        },
    }


def remote_org(
    contribution: Annotated[
        Path, typer.Argument(help="contribution-ORG.json of the other organisation.")
    ],
) -> None:
    """Print (JSON) the spec.organizations[] entry describing ORG as remote."""
    try:
        entry = remote_entry(contribution.read_bytes())
    except OSError as e:
        raise fail(f"cannot read {contribution}: {e.strerror}") from None
    except cer.CeremonyError as e:
        raise fail(str(e)) from None
    typer.echo(json.dumps(entry, sort_keys=True))


def contribute_from_cluster(
    consortium: Annotated[str, typer.Option("--consortium", "-c", help="Consortium name.")],
    org: Annotated[str, typer.Option("--org", help="Your organisation (local in that cluster).")],
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig's)."),
    ] = None,
    kube_context: Annotated[
        str | None, typer.Option("--kube-context", help="kubeconfig context to use.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write (default contribution-ORG.json).", show_default=False
        ),
    ] = None,
) -> None:
    """Export ORG's contribution from its operator's cluster, signed with ORG's admin key."""
    try:
        data = contribution_from_cluster(consortium, org, namespace, kube_context)
    except (cer.CeremonyError, KeyFileError, ValueError) as e:
        raise fail(str(e)) from None
    path = out or Path(f"contribution-{org}.json")
    path.write_bytes(data)
    console.print(f"contribution of {org} -> {path}", markup=False)
