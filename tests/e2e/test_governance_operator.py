"""Governance by organisations through the operator, on a real cluster (issue 14), and a
cluster user's first write with the member key of a context (issue 20): three
organisations, each with its own admin key in its own Secret; a spec change that adds a
validator becomes a proposal, which stays `WaitingForApprovals` until a second organisation's
vote — cast by a person with the CLI through that organisation's client context — and then
takes effect; `kubectl wait --for=condition=Ready` works throughout.

Organisations: acme (auto, the one the change concerns: it proposes), globex and initech
(`approve: manual`). Under the default MAJORITY policy (2 of 3) one manual organisation
among three could never hold a proposal up — the two automatic ones would carry it — so the
spec declares two manual organisations: only then does the operator's own vote (acme's, by
proposing) leave it at "1/3, need 2", and globex's CLI vote decides it.

The operator is installed by the `installed` fixture of test_consortium_lifecycle (helm, in a
namespace of its own). Timings are printed with an `[e2e]` prefix."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from consortium_node.cli.context import save_context

from .consortium_fixtures import CLIENT_PORT, Chain, condition, ready_now, report
from .test_consortium_lifecycle import Installed, installed  # noqa: F401  (module fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAME = "gov"
CTX_DIR = "/tmp/ctx"  # the globex person's ~/.consortium, inside the client pod


def manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "consortium.dev/v1alpha1",
            "kind": "Consortium",
            "metadata": {"name": NAME},
            "spec": {
                "chainId": "gov-e2e",
                "consensus": {"type": "raft"},
                "organizations": [
                    {"name": "acme", "validators": 1, "memberKey": True},
                    {"name": "globex", "validators": 1, "approve": "manual"},
                    {"name": "initech", "validators": 1, "approve": "manual"},
                ],
            },
        }
    )


@pytest.fixture(scope="module")
def gov(installed: Installed, node_image: str) -> Chain:  # noqa: F811
    c = Chain(installed.kube, installed.namespace, NAME)
    c.start_client(node_image)
    c.kube.apply(manifest(), namespace=c.namespace)
    waited = c.kube.run(
        *("--namespace", c.namespace, "wait", "--for=condition=Ready", f"consortium/{NAME}"),
        "--timeout=300s",
        check=False,
        timeout=330,
    )
    if waited.returncode != 0:
        pytest.fail(
            f"kubectl wait Ready: {waited.stderr.strip()}\n{c.diagnostics()}", pytrace=False
        )
    c.wait_ready(timeout=60, validators="3/3")
    return c


def use_org_context(c: Chain, org: str, admin: bool = True) -> None:
    """What `consortium context from-cluster ORG --consortium gov --org ORG [--key K]`
    writes (the same `save_context`, into a scratch directory), placed in the client pod as
    ORG's person's ~/.consortium: ORG's client TLS directory, the endpoint, and as signing
    key ORG's own admin key (`admin`) or else the member key the Secret carries."""
    with tempfile.TemporaryDirectory() as tmp:
        contexts = Path(tmp) / "contexts.yaml"
        endpoint = f"{NAME}-client:{CLIENT_PORT}"
        tls = c.secret(f"{NAME}-{org}-client")
        key = Path(f"{CTX_DIR}/{org}-admin.json") if admin else None
        save_context(org, endpoint, tls, key, path=contexts)
        doc = yaml.safe_load(contexts.read_text())
        want = f"{CTX_DIR}/{org}-admin.json" if admin else f"contexts/{org}/key.json"
        assert doc["contexts"][org]["key"] == want
        files = {"contexts.yaml": contexts.read_bytes()}
    c.put_files(CTX_DIR, files)
    c.put_files(f"{CTX_DIR}/contexts/{org}", tls)
    if admin:
        admin_key = c.secret(f"{NAME}-{org}-admin")["admin.json"]
        c.put_files(CTX_DIR, {f"{org}-admin.json": admin_key})


def cli_as(c: Chain, org: str, *args: str) -> Any:
    """`consortium ARGS` in the client pod through ORG's context (the pod's default TLS
    directory variable unset, so the context's TLS directory and key are the ones used)."""
    return c.kube.run(
        *("--namespace", c.namespace, "exec", c.client_pod, "--"),
        *("env", "-u", "CONSORTIUM_TLS_DIR", f"CONSORTIUM_CONTEXTS={CTX_DIR}/contexts.yaml"),
        f"CONSORTIUM_CONTEXT={org}",
        *("consortium", *args),
        check=False,
        timeout=90,
    )


def waiting(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The status while the operator waits for votes on the add-validator proposal."""
    cond = condition(obj, "WaitingForApprovals")
    st = obj.get("status") or {}
    props = st.get("proposals") or []
    if cond is None or cond.get("status") != "True" or len(props) != 1:
        return None
    return st


def test_each_organisation_has_its_own_admin_secret_and_the_chain_is_governed_by_them(
    gov: Chain,
) -> None:
    st = gov.get()["status"]
    assert st["governance"] == "organizations" and st["proposals"] == []
    names = {s["metadata"]["name"] for s in gov.json("get", "secrets")["items"]}
    assert {f"{NAME}-{o}-admin" for o in ("acme", "globex", "initech")} <= names
    assert f"{NAME}-admin" not in names
    keys = {
        o: json.loads(gov.secret(f"{NAME}-{o}-admin")["admin.json"]) for o in ("acme", "globex")
    }
    assert keys["acme"]["public_key"] != keys["globex"]["public_key"]
    use_org_context(gov, "globex")
    out = cli_as(gov, "globex", "gov", "policies")
    assert out.returncode == 0, out.stderr
    assert "globex: 1 admin key(s)" in out.stdout


def test_adding_a_validator_waits_for_a_manual_organisation_s_cli_vote(
    gov: Chain, request: pytest.FixtureRequest
) -> None:
    t0 = time.monotonic()
    gov.patch([{"op": "replace", "path": "/spec/organizations/0/validators", "value": 2}])
    st = gov.wait(
        "the add-validator proposal waiting for approvals", lambda: waiting(gov.get()), 300
    )
    (p,) = st["proposals"]
    assert p["action"] == "add_validator" and p["proposer"] == "acme", p
    assert p["votes"] == ["acme=yes"] and p["approvals"] == "1/3, need 2", p
    assert p["waitingFor"] == ["globex", "initech"], p
    msg = condition(gov.get(), "WaitingForApprovals")
    assert msg is not None and "1/3, need 2" in msg["message"], msg
    report(
        request.config,
        f"spec change -> proposal waiting for approvals: {time.monotonic() - t0:.1f}s",
    )

    # it stays pending while the chain moves on: no vote is cast for a manual organisation
    h0 = int(st["height"])

    def still_waiting_later() -> bool | None:
        obj = gov.get()
        now = waiting(obj)
        assert now is not None, f"no longer waiting: {obj.get('status')}"
        assert now["proposals"][0]["votes"] == ["acme=yes"], now["proposals"]
        assert now["validators"] == 3, now
        return True if int(now["height"]) >= h0 + 5 else None

    gov.wait("five more blocks with the proposal still pending", still_waiting_later, 120)
    assert not ready_now(gov.get())

    # a person of globex votes yes with the CLI, through globex's context
    use_org_context(gov, "globex")
    t1 = time.monotonic()
    out = cli_as(gov, "globex", "gov", "vote", str(p["id"]), "yes", "--wait-timeout", "30")
    assert out.returncode == 0, f"{out.stdout}{out.stderr}"
    assert f"proposal {p['id']} EXECUTED" in out.stdout, out.stdout
    obj = gov.wait_ready(300, validators="4/4")
    report(request.config, f"CLI vote -> new validator Ready: {time.monotonic() - t1:.1f}s")
    cond = condition(obj, "WaitingForApprovals")
    assert cond is not None and cond["status"] == "False", cond
    assert obj["status"]["proposals"] == []
    reasons = {e["reason"] for e in gov.json("get", "events")["items"]}
    assert {"ProposalSubmitted", "ProposalOpened", "ProposalClosed"} <= reasons, reasons
    # globex's vote came from its own key: the chain records it as globex's
    shown = cli_as(gov, "globex", "gov", "show", str(p["id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    shown_p = json.loads(shown.stdout)
    votes = {v["organization"]: v["vote"] for v in shown_p["votes"]}
    assert votes == {"acme": "yes", "globex": "yes"} and shown_p["state"] == "EXECUTED", shown_p
    signers = {v["organization"]: v["signer"] for v in shown_p["votes"]}
    admin = json.loads(gov.secret(f"{NAME}-globex-admin")["admin.json"])
    assert signers["globex"] == admin["public_key"], signers


def test_a_cluster_user_writes_with_the_member_key_of_the_context(gov: Chain) -> None:
    """Issue 20: acme declares memberKey; its client Secret carries the key the operator
    vouched for, and the context made from that Secret writes with no key file of its own."""
    use_org_context(gov, "acme", admin=False)
    out = cli_as(gov, "acme", "tx", "put", "greeting", "hello", "--wait", "--json")
    assert out.returncode == 0, f"{out.stdout}{out.stderr}"
    result = json.loads(out.stdout.splitlines()[-1])
    assert result.get("committed") is True and result.get("receipt_status") == "OK", result
    # the client Service may route the read to a node one block behind the one that confirmed
    # the write: read as of the write's height
    got = cli_as(
        gov, "acme", "query", "get", "greeting", "--json", "--min-height", str(result["height"])
    )
    assert got.returncode == 0, f"{got.stdout}{got.stderr}"
    assert json.loads(got.stdout.splitlines()[-1])["value"] == "hello"


def test_a_lost_validator_is_replaced_by_its_own_organisation_with_no_other_vote(
    gov: Chain, request: pytest.FixtureRequest
) -> None:
    """acme's second validator (gov-acme-1, added above) is lost for good: its key entry, its
    ledger volume and its pod are deleted. A person of acme declares it with the annotation
    consortium.dev/replace-validator; the operator stamps the declaration, mints a key for the
    new pod only once its volume is younger than the stamp, lets it sync as a follower, and
    proposes ReplaceValidator as acme — policy SELF: executed with acme's vote alone, while
    globex and initech (manual) cast none. The chain keeps committing throughout (3 of 4
    raft validators are a quorum)."""
    pod = f"{NAME}-acme-1"
    gov.wait_ready(300, validators="4/4")
    old = json.loads(gov.secret(f"{NAME}-acme-keys")[f"{pod}.json"])["public_key"]
    t0 = time.monotonic()
    h0 = int(gov.get()["status"]["height"])

    # lost: the key is gone from acme's key Secret ...
    gov.k(
        *("patch", "secret", f"{NAME}-acme-keys", "--type=json"),
        *("-p", json.dumps([{"op": "remove", "path": f"/data/{pod}.json"}])),
    )
    # ... a person of acme declares the replacement ...
    gov.k("annotate", "consortium", NAME, f"consortium.dev/replace-validator={pod}={old}")

    def stamped() -> str | None:
        ann = gov.get()["metadata"].get("annotations") or {}
        value = ann.get("consortium.dev/replace-validator", "")
        return value if "@" in value else None

    gov.wait("the declaration to be accepted (stamped)", stamped, 120)
    # ... and deletes the volume and the pod (the StatefulSet makes a new, empty claim)
    gov.k("delete", "pvc", f"data-{pod}", "--wait=false")
    gov.k("delete", "pod", pod, "--wait=false")

    heights: list[tuple[str, int]] = []

    def replaced() -> dict[str, Any] | None:
        obj = gov.get()
        st = obj.get("status") or {}
        heights.append((str(st.get("phase")), int(st.get("height") or 0)))
        ann = obj["metadata"].get("annotations") or {}
        if "consortium.dev/replace-validator" in ann:
            return None
        return obj if ready_now(obj) and st.get("readyValidators") == "4/4" else None

    gov.wait("the lost validator replaced and 4/4 Ready", replaced, 600)
    report(request.config, f"lost validator replaced: {time.monotonic() - t0:.1f}s")
    new = json.loads(gov.secret(f"{NAME}-acme-keys")[f"{pod}.json"])["public_key"]
    assert new != old
    # every step showed in status, and the chain kept committing while it ran
    assert "Replacing" in {phase for phase, _ in heights}, heights
    during = [h for phase, h in heights if phase == "Replacing"]
    assert during and max(during) > h0, (h0, heights)
    assert int(gov.get()["status"]["height"]) > h0 + 5
    reasons = {e["reason"] for e in gov.json("get", "events")["items"]}
    assert {"ReplacementDeclared", "KeysCreated", "ValidatorReplaced"} <= reasons, reasons
    # the chain's proposal: acme's vote alone executed it
    use_org_context(gov, "globex")
    out = cli_as(gov, "globex", "gov", "list", "--json")
    assert out.returncode == 0, out.stderr
    (p,) = [p for p in json.loads(out.stdout)["proposals"] if p["action"] == "replace_validator"]
    assert p["state"] == "EXECUTED" and p["proposer"] == "acme", p
    assert [(v["organization"], v["vote"]) for v in p["votes"]] == [("acme", "yes")], p
    status = json.loads(cli_as(gov, "globex", "status", "--json").stdout)
    ids = {v["node_id"] for v in status["validators"]}
    assert new in ids and old not in ids, (old, new, ids)
