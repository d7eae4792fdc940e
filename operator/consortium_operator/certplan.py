"""The operator's certificate decisions, pure: what the certificate phase of a reconcile pass
issues, decided from `Observed` (which holds certificates, never private keys) and a renewal
window. The planner (plan.py) consumes the same observation: it waits for a CA this phase
issues before a genesis or an AddOrganization lists it.

The model is cloudnative-pg's cluster_pki.go over pkg/certs: ensure each organisation's CA
(provision.pki.ca_decision), then each leaf — node certificates (provision.pki.node_certs_due,
with the names render chooses) and client TLS directories (provision.pki.client_certs_due: one
per organisation with a CA, for its users, and the operator's own, of the first organisation).
Called by reconcile."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from consortium_node.provision import pki as core

from .model import ConsortiumSpec, Names, Observed

OPERATOR_CLIENT_NAME = "consortium-operator"


def ca_decisions(spec: ConsortiumSpec, observed: Observed) -> dict[str, core.CaDecision]:
    """Organisation -> what to do about its CA (nothing without TLS)."""
    if not spec.security.tls:
        return {}
    return {
        o.name: core.ca_decision(
            o.name in observed.ca_certs or o.name in observed.ca_incomplete,
            observed.ca_trusted_on_chain(o.name),
        )
        for o in spec.local  # a remote organisation's CA is its own (spec .remote.caCert)
    }


def node_certs(
    spec: ConsortiumSpec,
    observed: Observed,
    names: Names,
    sans: Callable[[str], tuple[Sequence[str], Sequence[str]]],
    cas: Mapping[str, bytes],
    window: core.Window,
) -> tuple[core.NodeCert, ...]:
    """The node certificates due, for every keyed pod of each local organisation with a CA
    (`cas`: the CAs held after this pass's CA step); `sans(pod)`: the DNS names and the IP
    addresses besides 127.0.0.1 (an exposed organisation's external IP) it must name; a
    certificate that does not name them all (an organisation exposed after it was issued)
    is due again."""
    orgs = tuple(o.name for o in spec.local)
    due: list[core.NodeCert] = []
    for org in orgs:
        if org not in cas:
            continue
        pods = {
            pod: key
            for pod, key in observed.node_keys.items()
            if (parsed := names.parse_pod(pod, orgs)) is not None and parsed[0] == org
        }
        entries = observed.tls_entries.get(org, {})
        due += core.node_certs_due(
            org, entries, pods, lambda pod: sans(pod)[0], window, lambda pod: sans(pod)[1]
        )
    return tuple(due)


def client_certs(
    spec: ConsortiumSpec,
    observed: Observed,
    names: Names,
    cas: Mapping[str, bytes],
    window: core.Window,
) -> tuple[core.ClientCert, ...]:
    """The client TLS directories due: `<consortium>-<org>-client` of each organisation with
    a CA and the operator's `<consortium>-operator-client` (first organisation's CA), each
    when missing, near expiry, issued by another CA, or its trust bundle (every CA) changed."""
    wanted = [
        core.ClientCert(names.client_secret(o.name), o.name, f"{o.name}-client") for o in spec.local
    ]
    first = spec.local[0].name
    wanted.append(core.ClientCert(names.operator_client_secret, first, OPERATOR_CLIENT_NAME))
    return core.client_certs_due(wanted, observed.client_dirs, cas, window)
