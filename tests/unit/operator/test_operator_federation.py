"""Federation in the operator (issue 15): a Consortium names the organisations this operator
runs (`localOrganizations`) and describes the others as remote (CA, admin keys, validators
with their external addresses). The planner creates keys only for local organisations, never
writes a federated genesis alone, votes only as a local organisation, and proposes admitting a
remote organisation with the CA and admins the spec gives; rendering runs only local
StatefulSets, dials remote validators at their published addresses and exposes local pods
through per-pod Services whose address the node certificate names.

Worlds come from test_operator_plan.World."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from dataclasses import replace
from typing import Any

import pytest
import yaml
from consortium_node import pki as x509pki
from consortium_node.crypto import Ed25519Key
from consortium_node.provision import ceremony as cer
from consortium_node.provision import pki as core_pki
from consortium_node.provision.spec import SpecError
from consortium_operator import certplan, federation, plan
from consortium_operator.model import (
    CeremonyFile,
    ConsortiumSpec,
    GenesisSource,
    Names,
    NodeStatus,
    Observed,
    Owner,
    PodState,
    ProposalView,
    StatefulSetState,
)
from consortium_operator.plan import OrgTarget
from consortium_operator.render import Renderer
from consortium_operator.settings import Settings

from tests.unit.operator.test_operator_plan import IMAGE, N, World, key

pytestmark = pytest.mark.unit

CA_B = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
ADMIN_B = "bb" * 32
ADMIN_C = "cc" * 32
OWNER = Owner("c", "fed", "0b5c2b8e-0000-4000-8000-00000000000f")


def remote(org: str, admin: str, n: int = 1, ca: str = CA_B) -> dict[str, Any]:
    return {
        "caCert": ca,
        "admins": [admin],
        "validators": [
            {
                "name": f"{org}-{i}",
                "nodeId": key(N.pod(org, i)).hex(),
                "address": f"10.9.0.{i}:3{i}751",
            }
            for i in range(n)
        ],
    }


def raw(**over: Any) -> dict[str, Any]:
    """Raft; a (local, 2 validators, exposed by NodePort), b and c remote (1 each)."""
    body: dict[str, Any] = {
        "chainId": "fed",
        "consensus": {"type": "raft"},
        "localOrganizations": ["a"],
        "ceremony": {"configMap": "fed-ceremony"},
        "organizations": [
            {"name": "a", "validators": 2, "expose": {"address": "172.18.0.2"}},
            {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
            {"name": "c", "validators": 1, "remote": remote("c", ADMIN_C)},
        ],
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def fed(**over: Any) -> ConsortiumSpec:
    return ConsortiumSpec.parse(raw(**over))


# --------------------------------------------------------------------------- spec


def test_default_is_every_organisation_local() -> None:
    sp = ConsortiumSpec.parse({"chainId": "x", "organizations": [{"name": "a", "validators": 4}]})
    assert sp.local == sp.organizations and not sp.federated and sp.is_local("a")


def test_federated_spec_parses() -> None:
    sp = fed()
    assert [o.name for o in sp.local] == ["a"] and [o.name for o in sp.remote] == ["b", "c"]
    assert sp.federated and sp.total_validators == 4
    a = sp.org("a")
    assert a is not None and a.expose is not None
    assert a.expose.type == "NodePort" and a.expose.endpoint(1) == "172.18.0.2:30752"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ({"localOrganizations": ["a", "zz"]}, "localOrganizations[1] 'zz' is not one of"),
        ({"localOrganizations": ["a", "a"]}, "must not repeat"),
        (
            {
                "organizations": [{"name": "a", "validators": 2}, {"name": "b", "validators": 2}],
                "genesisFrom": {"configMap": "g", "sha256": "ab" * 32, "signaturesConfigMap": "s"},
            },
            "'b' is not in spec.localOrganizations, so it is remote",
        ),
        (
            {
                "organizations": [{"name": "a", "validators": 2}, {"name": "b", "validators": 2}],
                "ceremony": None,
            },
            "takes its genesis from a ceremony",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 3, "remote": remote("a", ADMIN_B, 3)},
                    {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
                ]
            },
            "'a' is a local organization",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 2},
                    {"name": "b", "validators": 2, "remote": remote("b", ADMIN_B, 1)},
                ]
            },
            "validators (2) must equal the number of remote.validators (1)",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 2},
                    {
                        "name": "b",
                        "validators": 1,
                        "remote": {**remote("b", ADMIN_B), "caCert": ""},
                    },
                ]
            },
            "remote.caCert must be the organization's CA certificate",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 2},
                    {
                        "name": "b",
                        "validators": 1,
                        "remote": {**remote("b", ADMIN_B), "admins": []},
                    },
                ]
            },
            "remote.admins needs 1 to 16",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 2},
                    {
                        "name": "b",
                        "validators": 1,
                        "remote": {
                            **remote("b", ADMIN_B),
                            "validators": [{"name": "b-0", "nodeId": "ab" * 32, "address": "b0"}],
                        },
                    },
                ]
            },
            "address must be host:port",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 2, "expose": {"address": "h", "port": 80}},
                    {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
                ]
            },
            "expose.port must be in 30000..32736",
        ),
        (
            {
                "organizations": [
                    {"name": "a", "validators": 2},
                    {
                        "name": "b",
                        "validators": 1,
                        "remote": remote("b", ADMIN_B),
                        "expose": {"address": "h"},
                    },
                ]
            },
            "only a local organization's nodes are exposed",
        ),
    ],
)
def test_bad_federation_specs_are_refused(case: dict[str, Any], needle: str) -> None:
    spec = raw(security={"tls": True}, **case)
    with pytest.raises(SpecError) as e:
        ConsortiumSpec.parse(spec)
    assert needle in str(e.value)


def test_during_the_ceremony_a_remote_organisation_is_a_name_and_a_count() -> None:
    sp = fed(organizations=[{"name": "a", "validators": 2}, {"name": "b", "validators": 2}])
    assert [o.name for o in sp.remote] == ["b"] and sp.remote[0].remote is None
    # rendering and planning cope: no peer for b yet, nothing proposed for it
    keys = {"c-a-0": key("c-a-0"), "c-a-1": key("c-a-1")}
    ms = Renderer(Settings(), Names("c"), OWNER).workloads(sp, {"a": OrgTarget(2)}, keys, "")
    assert [m["metadata"]["name"] for m in ms if m["kind"] == "StatefulSet"] == ["c-a"]


def test_remote_ca_is_not_needed_without_tls() -> None:
    orgs = [
        {"name": "a", "validators": 2},
        {"name": "b", "validators": 1, "remote": {**remote("b", ADMIN_B), "caCert": ""}},
    ]
    sp = fed(organizations=orgs, security={"tls": False})
    assert sp.federated


# --------------------------------------------------------------------------- planner


def nxt(sp: ConsortiumSpec, o: Observed) -> plan.Action:
    return plan.next_step(sp, o, N, IMAGE, max_lag=2).action


def test_genesis_phase_makes_keys_for_local_organisations_only_and_writes_no_genesis() -> None:
    sp = fed(security={"tls": False})
    o = Observed()
    assert nxt(sp, o) == plan.CreateAdminKey("a")
    o = replace(o, org_admins={"a": b"\xaa" * 32})
    assert nxt(sp, o) == plan.CreateNodeKeys("a", ("c-a-0", "c-a-1"))
    o = replace(o, node_keys={"c-a-0": key("c-a-0"), "c-a-1": key("c-a-1")})
    a = nxt(sp, o)
    # never a genesis of its own: the other organisations' keys are not here
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForCeremony", a


def test_genesis_phase_issues_only_local_cas() -> None:
    sp = fed(security={"tls": True})
    o = Observed(
        org_admins={"a": b"\xaa" * 32},
        node_keys={"c-a-0": key("c-a-0"), "c-a-1": key("c-a-1")},
    )
    assert set(certplan.ca_decisions(sp, o)) == {"a"}
    a = nxt(sp, o)
    assert isinstance(a, plan.Wait) and a.message == "waiting for the CA of a"


def running(
    sp: ConsortiumSpec, chain_orgs: tuple[str, ...], proposals: tuple[ProposalView, ...] = ()
) -> Observed:
    """a runs 2 validator pods here; b and c's validators run elsewhere (remote)."""
    w = World(sp, {"a": 2}, chain_orgs=chain_orgs)
    o = w.observed()
    vset = (*(o.genesis_validators or ()), (key("c-b-0"), "b"), (key("c-c-0"), "c"))
    nodes = {p: replace(n, validators=vset) for p, n in o.nodes.items()}
    return replace(
        o,
        admin_public=None,
        nodes=nodes,
        genesis_validators=vset,
        org_governance=True,
        org_admins={"a": b"\xaa" * 32},
        genesis_organizations=("a", "b", "c"),
        proposals=proposals,
    )


def with_d(sp_raw: dict[str, Any]) -> ConsortiumSpec:
    orgs = [
        *sp_raw["organizations"],
        {"name": "d", "validators": 1, "remote": remote("d", "dd" * 32)},
    ]
    return ConsortiumSpec.parse({**sp_raw, "organizations": orgs})


def test_a_federated_chain_converges_with_remote_validators() -> None:
    sp = fed(security={"tls": False})
    assert isinstance(nxt(sp, running(sp, ("a", "b", "c"))), plan.Converged)


def test_a_remote_organisation_is_proposed_with_its_ca_and_admins_by_a_local_one() -> None:
    sp = with_d(raw(security={"tls": True}))
    a = nxt(sp, running(sp, ("a", "b", "c")))
    assert isinstance(a, plan.Propose) and a.org == "a"
    assert a.change == plan.AddOrganization("d", CA_B.encode(), (bytes.fromhex("dd" * 32),))


def proposal_d(votes: tuple[tuple[str, bool], ...]) -> ProposalView:
    return ProposalView(
        id=3,
        state="PENDING",
        change=("add_organization", "d"),
        summary="admit d",
        proposer=votes[0][0],
        votes=votes,
        members=("a", "b", "c"),
        yes=len(votes),
        needed=2,
        expiry_height=1000,
    )


def test_votes_only_as_a_local_organisation() -> None:
    sp = with_d(raw(security={"tls": False}))
    a = nxt(sp, running(sp, ("a", "b", "c"), (proposal_d((("b", True),)),)))
    assert isinstance(a, plan.Vote) and a.org == "a"
    # a has voted: b and c vote in their own cluster; nothing is signed for them here
    a = nxt(sp, running(sp, ("a", "b", "c"), (proposal_d((("a", True),)),)))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals", a
    assert "waiting for b, c" in a.message


def test_remote_validators_count_as_live_for_quorum() -> None:
    # a scales 2 -> 1: with 4 validators (raft quorum 3) and b, c unobservable but counted
    # live, removing c-a-1 leaves 3 of 4 before and 2 live of 3 after — allowed
    sp = fed(
        security={"tls": False},
        organizations=[
            {"name": "a", "validators": 1},
            {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
            {"name": "c", "validators": 1, "remote": remote("c", ADMIN_C)},
        ],
    )
    a = nxt(sp, running(sp, ("a", "b", "c")))
    assert isinstance(a, plan.Propose) and isinstance(a.change, plan.RemoveValidator), a
    assert a.change.pod == "c-a-1" and a.org == "a"


# --------------------------------------------------------------------------- rendering


def rendered(sp: ConsortiumSpec) -> list[dict[str, Any]]:
    r = Renderer(Settings(), Names("c"), OWNER)
    keys = {"c-a-0": key("c-a-0"), "c-a-1": key("c-a-1")}
    return r.workloads(sp, {"a": OrgTarget(2)}, keys, "ab" * 32)


def test_only_local_statefulsets_and_configs() -> None:
    ms = rendered(fed())
    sts = [m["metadata"]["name"] for m in ms if m["kind"] == "StatefulSet"]
    assert sts == ["c-a"]
    (cm,) = [m for m in ms if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "c-config"]
    assert set(cm["data"]) == {"a.yaml"}


def test_remote_validators_are_dialled_at_their_published_addresses() -> None:
    ms = rendered(fed())
    (cm,) = [m for m in ms if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "c-config"]
    peers = yaml.safe_load(cm["data"]["a.yaml"])["peers"]
    addresses = {p["node_id"] if "node_id" in p else p["nodeId"]: p["address"] for p in peers}
    assert addresses[key("c-b-0").hex()] == "10.9.0.0:30751"
    assert addresses[key("c-c-0").hex()] == "10.9.0.0:30751"
    assert addresses[key("c-a-1").hex()].startswith("c-a-1.c-peers.fed.svc")


def test_exposed_pods_get_a_nodeport_service_each_and_peers_may_come_from_outside() -> None:
    ms = rendered(fed())
    ext = {
        m["metadata"]["name"]: m
        for m in ms
        if m["kind"] == "Service" and m["metadata"]["name"].endswith("-ext")
    }
    assert set(ext) == {"c-a-0-ext", "c-a-1-ext"}
    s1 = ext["c-a-1-ext"]["spec"]
    assert s1["type"] == "NodePort" and s1["publishNotReadyAddresses"] is True
    assert s1["selector"]["statefulset.kubernetes.io/pod-name"] == "c-a-1"
    assert s1["ports"] == [
        {"name": "peer", "port": 7051, "targetPort": "peer", "nodePort": 30752, "protocol": "TCP"}
    ]
    (np,) = [m for m in ms if m["kind"] == "NetworkPolicy"]
    assert np["spec"]["ingress"][0] == {"from": [], "ports": [{"port": 7051, "protocol": "TCP"}]}


def test_an_unexposed_consortium_keeps_peers_in_cluster() -> None:
    sp = ConsortiumSpec.parse({"chainId": "x", "organizations": [{"name": "a", "validators": 4}]})
    r = Renderer(Settings(), Names("c"), OWNER)
    keys = {N.pod("a", i): key(N.pod("a", i)) for i in range(4)}
    ms = r.workloads(sp, {"a": OrgTarget(4)}, keys, "ab" * 32)
    assert not [m for m in ms if m["metadata"]["name"].endswith("-ext")]
    (np,) = [m for m in ms if m["kind"] == "NetworkPolicy"]
    assert np["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": N.selector()}}]


def test_the_node_certificate_names_the_external_address() -> None:
    r = Renderer(Settings(), Names("c"), OWNER)
    sp = fed()
    assert r.node_ips(sp, "c-a-1") == ["172.18.0.2"]
    assert "172.18.0.2" not in r.node_dns_names("c-a-1", sp)
    by_name = fed(
        organizations=[
            {
                "name": "a",
                "validators": 2,
                "expose": {"address": "a.example.org", "type": "LoadBalancer", "port": 7100},
            },
            {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
            {"name": "c", "validators": 1, "remote": remote("c", ADMIN_C)},
        ]
    )
    assert "a.example.org" in r.node_dns_names("c-a-0", by_name)
    assert r.node_ips(by_name, "c-a-0") == []
    assert r.external_address(by_name, "c-a-1") == "a.example.org:7101"
    o = Observed(node_keys={"c-a-0": key("c-a-0")})
    (due,) = certplan.node_certs(
        sp,
        o,
        N,
        lambda pod: (r.node_dns_names(pod, sp), r.node_ips(sp, pod)),
        {"a": b"ca"},
        core_pki.Window(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.timedelta(days=1)),
    )
    assert due.ips == ("127.0.0.1", "172.18.0.2")


def test_exposing_an_organisation_later_reissues_its_node_certificates() -> None:
    r = Renderer(Settings(), Names("c"), OWNER)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    window = core_pki.Window(now, dt.timedelta(days=1))
    ca = x509pki.new_ca("a", now, x509pki.new_private_key(), 1)
    unexposed = fed(
        organizations=[
            {"name": "a", "validators": 1},
            {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
            {"name": "c", "validators": 1, "remote": remote("c", ADMIN_C)},
        ]
    )
    issued = x509pki.issue_node_cert(
        ca,
        "a",
        "c-a-0",
        key("c-a-0"),
        now,
        x509pki.new_private_key(),
        2,
        r.node_dns_names("c-a-0", unexposed),
        ("127.0.0.1", *r.node_ips(unexposed, "c-a-0")),
    )
    o = Observed(
        node_keys={"c-a-0": key("c-a-0")},
        tls_entries={"a": {"c-a-0.pem": issued.cert_pem, "c-a-0.key": issued.key_pem}},
    )

    def due(sp: ConsortiumSpec) -> tuple[core_pki.NodeCert, ...]:
        return certplan.node_certs(
            sp,
            o,
            N,
            lambda pod: (r.node_dns_names(pod, sp), r.node_ips(sp, pod)),
            {"a": b"ca"},
            window,
        )

    assert due(unexposed) == ()
    exposed = fed(
        organizations=[
            {"name": "a", "validators": 1, "expose": {"address": "172.18.0.2"}},
            {"name": "b", "validators": 1, "remote": remote("b", ADMIN_B)},
            {"name": "c", "validators": 1, "remote": remote("c", ADMIN_C)},
        ]
    )
    (again,) = due(exposed)  # the external address its peers will dial is not in it yet
    assert again.member == "c-a-0" and "172.18.0.2" in again.ips


# --------------------------------------------------------------------------- the ceremony

SEED = 1515
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Party:
    """One organisation of the ceremony with its own keys (seeded)."""

    def __init__(self, name: str, rng: random.Random, validators: int) -> None:
        self.name = name
        self.admin = Ed25519Key(rng.randbytes(32))
        self.ca = x509pki.new_ca(
            name, NOW, x509pki.new_private_key(), rng.getrandbits(62) + 1
        ).cert_pem
        self.nodes = [Ed25519Key(rng.randbytes(32)).public for _ in range(validators)]

    def validators(self) -> list[cer.Validator]:
        return [
            cer.Validator(f"c-{self.name}-{i}", n, f"172.18.0.9:{30751 + i}")
            for i, n in enumerate(self.nodes)
        ]

    def remote(self) -> dict[str, Any]:
        return {
            "caCert": self.ca.decode(),
            "admins": [self.admin.public.hex()],
            "validators": [
                {"name": v.name, "nodeId": v.node_id.hex(), "address": v.address}
                for v in self.validators()
            ],
        }


class Ceremony:
    """Organisation a runs here (2 validators); b and c elsewhere (1 each). The ceremony is
    run through: a's contribution from what this cluster publishes, b and c's from their own
    keys, assembled, signed by each."""

    def __init__(self) -> None:
        print(f"seed {SEED}")
        rng = random.Random(SEED)
        self.a, self.b, self.cc = (Party(n, rng, v) for n, v in (("a", 2), ("b", 1), ("c", 1)))
        self.file = cer.init("fed", ["a", "b", "c"], {"type": "raft"}, {}, 1_767_225_600)
        self.spec_raw = raw(
            ceremony={"configMap": "fed-ceremony"},
            organizations=[
                {"name": "a", "validators": 2, "expose": {"address": "172.18.0.2"}},
                {"name": "b", "validators": 1, "remote": self.b.remote()},
                {"name": "c", "validators": 1, "remote": self.cc.remote()},
            ],
        )
        self.observed = Observed(
            org_admins={"a": self.a.admin.public},
            node_keys={"c-a-0": self.a.nodes[0], "c-a-1": self.a.nodes[1]},
            ca_certs={"a": self.a.ca},
            ceremony=CeremonyFile(raw=self.file),
        )
        (published,) = federation.contributions(self.spec(), self.observed, N, "fed")
        self.published = published
        # what `ceremony contribute --from-cluster` does with it: a's admin signs it
        contrib_a = cer.contribute(
            self.file,
            "a",
            published["ca"].encode(),
            [bytes.fromhex(k) for k in published["admins"]],
            [bytes.fromhex(k) for k in published["members"]],
            [
                cer.Validator(v["name"], bytes.fromhex(v["nodeId"]), v["address"])
                for v in published["validators"]
            ],
            self.a.admin,
        )
        self.contribs = {
            "a": contrib_a,
            **{
                p.name: cer.contribute(
                    self.file, p.name, p.ca, [p.admin.public], [], p.validators(), p.admin
                )
                for p in (self.b, self.cc)
            },
        }
        self.genesis = cer.assemble(self.file, list(self.contribs.values()))
        self.sigs = {
            p.name: cer.sign(self.genesis, p.name, self.contribs[p.name], p.admin, self.file)
            for p in (self.a, self.b, self.cc)
        }
        self.sha = hashlib.sha256(self.genesis).hexdigest()

    def spec(self, sha: str | None = None, **over: Any) -> ConsortiumSpec:
        body = dict(self.spec_raw)
        if sha is not None:
            body["genesisFrom"] = {
                "configMap": "fed-genesis",
                "sha256": sha,
                "signaturesConfigMap": "fed-sigs",
            }
        body.update(over)
        return ConsortiumSpec.parse(body)

    def with_source(
        self, genesis: bytes | None = None, sigs: dict[str, bytes] | None = None, **over: Any
    ) -> Observed:
        s = self.sigs if sigs is None else sigs
        src = GenesisSource(
            self.genesis if genesis is None else genesis,
            tuple(sorted((f"genesis-{o}.sig", v) for o, v in s.items())),
        )
        return replace(self.observed, genesis_source=src, **over)


@pytest.fixture(scope="module")
def cer_world() -> Ceremony:
    return Ceremony()


def test_the_published_contribution_is_this_clusters_own_part(cer_world: Ceremony) -> None:
    w = cer_world
    p = w.published
    assert p["ceremony"] == hashlib.sha256(w.file).hexdigest() and p["organization"] == "a"
    assert p["ca"] == w.a.ca.decode() and p["admins"] == [w.a.admin.public.hex()]
    assert p["validators"] == [
        {"name": "c-a-0", "nodeId": w.a.nodes[0].hex(), "address": "172.18.0.2:30751"},
        {"name": "c-a-1", "nodeId": w.a.nodes[1].hex(), "address": "172.18.0.2:30752"},
    ]
    # no contribution before every key and the CA exist
    partial = replace(w.observed, node_keys={"c-a-0": w.a.nodes[0]})
    assert federation.contributions(w.spec(), partial, N, "fed") == []
    assert federation.contributions(w.spec(), replace(w.observed, ca_certs={}), N, "fed") == []


def test_without_genesis_from_the_operator_waits_for_the_ceremony(cer_world: Ceremony) -> None:
    a = nxt(cer_world.spec(), cer_world.observed)
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForCeremony"


def test_the_signed_genesis_is_adopted_byte_for_byte(cer_world: Ceremony) -> None:
    w = cer_world
    a = nxt(w.spec(w.sha), w.with_source())
    assert a == plan.AdoptGenesis(w.genesis)
    assert str(a) == f"adopt the ceremony's genesis {w.sha[:16]}"


def test_a_missing_configmap_is_waited_for(cer_world: Ceremony) -> None:
    w = cer_world
    o = replace(w.observed, genesis_source=GenesisSource(problem="ConfigMap fed-genesis not found"))
    a = nxt(w.spec(w.sha), o)
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForGenesis"


def refused(sp: ConsortiumSpec, o: Observed) -> plan.Blocked:
    s = plan.next_step(sp, o, N, IMAGE)
    assert isinstance(s.action, plan.Blocked), s.action
    assert s.targets is None and s.phase == "Degraded"  # no workload: no node starts
    return s.action


def test_a_genesis_with_another_hash_is_refused(cer_world: Ceremony) -> None:
    w = cer_world
    b = refused(w.spec("00" * 32), w.with_source())
    assert b.reason == "GenesisMismatch" and "sha256" in b.message


def test_a_missing_or_foreign_signature_is_refused(cer_world: Ceremony) -> None:
    w = cer_world
    without_c = {o: s for o, s in w.sigs.items() if o != "c"}
    b = refused(w.spec(w.sha), w.with_source(sigs=without_c))
    assert b.reason == "BadSignature" and "not signed by c" in b.message
    # c's signature made with a's admin key: a forged vote for c
    forged = json.loads(w.sigs["c"])
    body = cer.canonical({"genesis": w.sha, "organization": "c"})
    forged.update(key=w.a.admin.public.hex(), sig=w.a.admin.sign(body).hex())
    b = refused(w.spec(w.sha), w.with_source(sigs={**w.sigs, "c": cer.canonical(forged)}))
    assert b.reason == "BadSignature" and "by an admin of a" in b.message


def test_a_genesis_with_another_ca_for_a_local_organisation_is_refused(cer_world: Ceremony) -> None:
    w = cer_world
    other = replace(w.with_source(), ca_certs={"a": w.b.ca})
    b = refused(w.spec(w.sha), other)
    assert b.reason == "ForeignCertificate" and "Secret c-a-ca" in b.message


def test_a_spec_with_another_ca_for_a_remote_organisation_is_refused(cer_world: Ceremony) -> None:
    w = cer_world
    orgs = [dict(o) for o in w.spec_raw["organizations"]]
    orgs[1] = {**orgs[1], "remote": {**orgs[1]["remote"], "caCert": w.cc.ca.decode()}}
    b = refused(w.spec(w.sha, organizations=orgs), w.with_source())
    assert b.reason == "ForeignCertificate" and "b" in b.message


def test_a_genesis_without_this_clusters_validators_is_refused(cer_world: Ceremony) -> None:
    w = cer_world
    o = w.with_source(node_keys={"c-a-0": w.a.nodes[0], "c-a-1": w.b.nodes[0]})
    b = refused(w.spec(w.sha), o)
    assert b.reason == "GenesisMismatch" and "Secret c-a-keys" in b.message


def test_nodes_never_run_on_a_genesis_configmap_that_is_not_the_pinned_one(
    cer_world: Ceremony,
) -> None:
    w = cer_world
    sp = w.spec(w.sha)
    o = replace(running(sp, ("a", "b", "c")), genesis_hash="ab" * 32)  # someone else's genesis
    s = plan.next_step(sp, o, N, IMAGE)
    assert isinstance(s.action, plan.Blocked) and s.action.reason == "GenesisMismatch"
    assert s.targets is None
    assert isinstance(nxt(sp, replace(o, genesis_hash=w.sha)), plan.Converged)


def test_genesis_from_must_not_name_the_operators_own_configmap(cer_world: Ceremony) -> None:
    w = cer_world
    body = dict(w.spec_raw)
    body["genesisFrom"] = {"configMap": "c-genesis", "sha256": w.sha, "signaturesConfigMap": "s"}
    b = refused(ConsortiumSpec.parse(body), w.with_source())
    assert b.reason == "GenesisMismatch" and "operator's own genesis ConfigMap" in b.message


# --------------------------------------------------------------------------- joining later


class Joiner:
    """Organisation d, in its own cluster, joins the running chain of the ceremony above: its
    spec describes a, b and c as remote (their contributions) and d as local, and pins the
    ceremony's genesis, which does not list d."""

    def __init__(self, w: Ceremony) -> None:
        self.w = w
        rng = random.Random(SEED + 4)
        self.d = Party("d", rng, 1)
        self.spec_raw = raw(
            localOrganizations=["d"],
            ceremony={"configMap": "fed-ceremony"},
            genesisFrom={
                "configMap": "fed-genesis",
                "sha256": w.sha,
                "signaturesConfigMap": "fed-sigs",
            },
            organizations=[
                {"name": "a", "validators": 2, "remote": w.a.remote()},
                {"name": "b", "validators": 1, "remote": w.b.remote()},
                {"name": "c", "validators": 1, "remote": w.cc.remote()},
                {"name": "d", "validators": 1, "expose": {"address": "172.18.0.4", "port": 30781}},
            ],
        )
        self.sp = ConsortiumSpec.parse(self.spec_raw)
        self.genesis_vset = tuple(
            (n, p.name) for p in (w.a, w.b, w.cc) for n in p.nodes
        )  # what the genesis lists
        self.before = Observed(
            org_admins={"d": self.d.admin.public},
            node_keys={"c-d-0": self.d.nodes[0]},
            ca_certs={"d": self.d.ca},
            ceremony=CeremonyFile(raw=w.file),
            genesis_source=GenesisSource(
                w.genesis, tuple(sorted((f"genesis-{o}.sig", v) for o, v in w.sigs.items()))
            ),
        )

    def adopted(
        self,
        chain_orgs: tuple[str, ...] | None,
        vset: tuple[tuple[bytes, str], ...] | None = None,
        height: int = 100,
        proposals: tuple[ProposalView, ...] = (),
        pod: bool = True,
    ) -> Observed:
        """After adoption: d's StatefulSet runs c-d-0; `chain_orgs` None = it does not answer."""
        org = self.sp.org("d")
        assert org is not None
        sts = StatefulSetState(
            org="d",
            replicas=1 if pod else 0,
            partition=0,
            fingerprint=self.sp.pod_fingerprint(org, IMAGE),
            update_revision="r1",
            generation=1,
            observed_generation=1,
        )
        pods = {"c-d-0": PodState("c-d-0", "d", 0, True, "r1", "10.0.0.9")} if pod else {}
        nodes = (
            {}
            if chain_orgs is None or not pod
            else {
                "c-d-0": NodeStatus(
                    height=height,
                    role="observer",
                    leader=self.w.a.nodes[0],
                    validators=vset or self.genesis_vset,
                    sync_state="synced",
                    organizations=chain_orgs,
                )
            }
        )
        return replace(
            self.before,
            genesis_validators=self.genesis_vset,
            genesis_hash=self.w.sha,
            genesis_organizations=("a", "b", "c"),
            org_governance=True,
            statefulsets={"d": sts},
            pods=pods,
            nodes=nodes,
            proposals=proposals,
        )


@pytest.fixture(scope="module")
def joiner(cer_world: Ceremony) -> Joiner:
    return Joiner(cer_world)


def test_a_joining_organisation_adopts_the_running_chains_genesis(joiner: Joiner) -> None:
    # the genesis does not list d: d joins later, it is not a mismatch
    assert nxt(joiner.sp, joiner.before) == plan.AdoptGenesis(joiner.w.genesis)
    assert federation.joining(joiner.sp, joiner.adopted(None)) == {"d"}
    assert federation.joining(joiner.w.spec(joiner.w.sha), joiner.w.with_source()) == set()


def test_a_genesis_listing_an_organisation_the_spec_does_not_describe_is_refused(
    joiner: Joiner,
) -> None:
    body = dict(joiner.spec_raw)
    body["organizations"] = [o for o in body["organizations"] if o["name"] != "c"]
    b = refused(ConsortiumSpec.parse(body), joiner.before)
    assert b.reason == "GenesisMismatch" and "lists organisations c that the spec" in b.message


def test_a_joiners_nodes_start_at_once_as_non_validators(joiner: Joiner) -> None:
    s = plan.next_step(joiner.sp, joiner.adopted(None, pod=False), N, IMAGE)
    assert s.targets is not None and s.targets["d"] == OrgTarget(1, 0), s
    s = plan.next_step(joiner.sp, joiner.adopted(None), N, IMAGE)
    assert isinstance(s.action, plan.Wait) and s.action.reason == "Joining", s.action
    assert s.phase == "Joining" and s.targets is not None and s.targets["d"].replicas == 1


def test_a_joiner_waits_for_the_members_to_admit_it(joiner: Joiner) -> None:
    s = plan.next_step(joiner.sp, joiner.adopted(("a", "b", "c")), N, IMAGE)
    assert isinstance(s.action, plan.Wait) and s.action.reason == "WaitingForAdmission", s.action
    assert s.phase == "Joining"
    assert "contribute-from-cluster --org d" in s.action.message
    # never a proposal or vote signed for an organisation it does not hold the key of
    assert not isinstance(s.action, plan.Propose | plan.Vote)


def test_once_admitted_and_caught_up_the_joiner_proposes_its_validator(joiner: Joiner) -> None:
    admitted = joiner.adopted(("a", "b", "c", "d"))
    s = plan.next_step(joiner.sp, admitted, N, IMAGE)
    assert isinstance(s.action, plan.Propose), s.action
    assert s.action.org == "d" and s.phase == "Joining"
    assert s.action.change == plan.AddValidator("c-d-0", "d", joiner.d.nodes[0])
    # still syncing: it waits, and says so
    n = admitted.nodes["c-d-0"]
    syncing = replace(admitted, nodes={"c-d-0": replace(n, sync_state="catching-up")})
    s = plan.next_step(joiner.sp, syncing, N, IMAGE)
    assert isinstance(s.action, plan.Wait) and "to catch up" in s.action.message, s.action
    assert s.phase == "Joining"


def test_a_joiners_nodes_trust_its_own_ca(joiner: Joiner) -> None:
    r = Renderer(Settings(), Names("c"), OWNER)
    sp = replace(joiner.sp, security=replace(joiner.sp.security, tls=True))
    keys = {"c-d-0": joiner.d.nodes[0]}

    def find(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        cm = next(d for d in docs if d["kind"] == "ConfigMap")
        sts = next(d for d in docs if d["kind"] == "StatefulSet")
        return yaml.safe_load(cm["data"]["d.yaml"]), sts["spec"]["template"]["spec"]

    cfg, pod = find(r.workloads(sp, {"d": OrgTarget(1)}, keys, "ab" * 32, frozenset({"d"})))
    assert cfg["tls"]["ca_file"] == "/tls-own-ca/ca.pem"
    vol = next(v for v in pod["volumes"] if v["name"] == "own-ca")
    # the CA's certificate only: ca.key never reaches a pod
    assert vol["secret"] == {
        "secretName": "c-d-ca",
        "defaultMode": 0o444,
        "items": [{"key": "ca.pem", "path": "ca.pem"}],
    }
    cfg, pod = find(r.workloads(sp, {"d": OrgTarget(1)}, keys, "ab" * 32))
    assert "ca_file" not in cfg["tls"] and all(v["name"] != "own-ca" for v in pod["volumes"])


def add_d_validator(node: bytes, votes: tuple[tuple[str, bool], ...]) -> ProposalView:
    return ProposalView(
        id=7,
        state="PENDING",
        change=("add_validator", node.hex()),
        summary="add validator c-d-0 (d)",
        proposer="d",
        votes=votes,
        members=("a", "b", "c", "d"),
        yes=len(votes),
        needed=3,
        expiry_height=1000,
    )


def test_members_second_a_remote_organisations_listed_validator_and_never_propose_it() -> None:
    sp = with_d(raw(security={"tls": False}))  # d remote, validator c-d-0 listed
    d0 = key("c-d-0")
    o = running(sp, ("a", "b", "c", "d"))
    # d is a member, its validator not added yet: a does not propose it (d does, once caught up)
    assert isinstance(nxt(sp, o), plan.Converged)
    a = nxt(sp, replace(o, proposals=(add_d_validator(d0, (("d", True),)),)))
    assert isinstance(a, plan.Vote) and a.org == "a" and a.proposal == 7, a
    # a voted: nothing more here (b and c vote in their cluster); no wait holds a's own work
    a = nxt(sp, replace(o, proposals=(add_d_validator(d0, (("d", True), ("a", True))),)))
    assert isinstance(a, plan.Converged), a
    # a node id the spec does not list for d gets no vote
    stranger = add_d_validator(b"\x01" * 32, (("d", True),))
    assert isinstance(nxt(sp, replace(o, proposals=(stranger,))), plan.Converged)
