"""README.md keeps its convention (tests/support/readme.py): every ```sh block has exactly one
known marker on the line before, and every path its Layout section names exists. Also the
parser's own rules, on small made-up READMEs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.readme import (
    README,
    ROOT,
    Journey,
    ReadmeError,
    blocks,
    notes_blocks,
    parse,
    section,
)

pytestmark = pytest.mark.unit


def test_every_sh_block_of_the_readme_has_a_known_marker() -> None:
    found = parse(README.read_text())  # raises, naming the line, on a missing/unknown marker
    assert found, "README.md has no sh blocks"
    tiers = {b.tier for b in found}
    assert {"local", "cluster"} <= tiers, tiers
    # the illustrative blocks stay few
    assert sum(b.tier is None for b in found) <= 4, [b.where() for b in found if b.tier is None]


def test_no_block_of_the_readme_hides_a_background_job_or_a_fixed_sleep() -> None:
    # a long-running command is marked `background until:` instead of ending in `&`, and a
    # README block never waits with a fixed sleep: a sleep is only the pause of a poll that
    # checks a condition and is bounded (`for _ in $(seq N)`, the condition tested inside)
    for b in parse(README.read_text()):
        if b.tier is None:
            continue
        bounded_poll = re.search(r"for \w+ in \$\(seq \d+\)", b.code) is not None
        for line in b.code.splitlines():
            code = line.split("#", 1)[0].rstrip()
            assert not code.endswith("&"), f"{b.where()}: {line!r} (mark it background)"
            if re.search(r"\bsleep\b", code):
                assert bounded_poll, f"{b.where()}: {line!r} (a sleep outside a bounded poll)"


def test_the_journeys_are_in_order_with_cleanups_last() -> None:
    cluster = blocks("cluster")
    assert cluster[-1].cleanup and not cluster[0].cleanup
    assert "helm upgrade --install consortium-crds" in cluster[0].code
    local = blocks("local")
    assert local[0].background_until is not None and "consortium up" in local[0].code


def test_every_path_the_layout_section_names_exists() -> None:
    text = section(README.read_text(), "Layout")
    named = set(re.findall(r"`([^`\s]+)`", text)) | set(re.findall(r"\]\(([^)]+)\)", text))
    paths = {p for p in named if "/" in p or p.endswith((".md", ".py"))}
    assert len(paths) >= 15, paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README's Layout names paths that do not exist: {missing}"


def test_a_block_without_a_marker_fails() -> None:
    with pytest.raises(ReadmeError, match=r"README\.md:3: a ```sh block without a marker"):
        parse("# t\n\n```sh\nls\n```\n")
    with pytest.raises(ReadmeError, match="without a marker"):
        parse("<!-- run: local -->\n\n```sh\nls\n```\n")  # not on the line right before


def test_unknown_markers_and_options_fail() -> None:
    for marker in ("run: laptop", "run local", "illustrative!", "run: local, forever"):
        with pytest.raises(ReadmeError, match="unknown marker"):
            parse(f"<!-- {marker} -->\n```sh\nls\n```\n")
    with pytest.raises(ReadmeError, match="never closes"):
        parse("<!-- run: local -->\n```sh\nls\n")
    with pytest.raises(ReadmeError, match=r"as ```sh"):
        parse("<!-- run: local -->\n```bash\nls\n```\n")


def test_markers_and_their_options_parse() -> None:
    text = "\n".join(
        [
            "<!-- run: local, background until: endpoints: -->",
            "```sh",
            "consortium up",
            "```",
            "```yaml",
            "a: 1",
            "```",
            "<!-- run: cluster, cleanup -->",
            "```sh",
            "kubectl delete x",
            "```",
            "<!-- run: cluster -->",
            "```sh",
            "kubectl get x",
            "```",
            "<!-- run: local, fails with: policy not met -->",
            "```sh",
            "false",
            "```",
            "<!-- run: local, after ctrl-c -->",
            "```sh",
            "true",
            "```",
            "<!-- illustrative -->",
            "```sh",
            "make test",
            "```",
            "",
        ]
    )
    got = parse(text)
    assert [(b.line, b.tier) for b in got] == [
        (2, "local"),
        (9, "cluster"),
        (13, "cluster"),
        (17, "local"),
        (21, "local"),
        (25, None),
    ]
    assert got[0].background_until == "endpoints:" and got[0].code == "consortium up\n"
    assert got[1].cleanup and not got[2].cleanup
    assert got[3].fails_with == "policy not met"
    assert got[4].after_ctrl_c


# --------------------------------------------------------------------------- the runner


def _journey(tmp_path: Path) -> Journey:
    return Journey(cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=20)


def test_the_runner_runs_blocks_in_order_and_shows_a_failing_block_with_its_output(
    tmp_path: Path,
) -> None:
    got = parse(
        "<!-- run: local -->\n```sh\necho one > f\n```\n"
        "<!-- run: local -->\n```sh\ncat f\necho two\nfalse\necho never\n```\n"
    )
    with _journey(tmp_path) as j:
        assert j.run(got[0]) == ""
        with pytest.raises(ReadmeError) as e:
            j.run(got[1])
    text = str(e.value)
    assert "README.md:6 <!-- run: local -->: exit 1" in text
    assert "one\ntwo\n" in text and "never" not in text.split("--- output ---")[1]


def test_background_ctrl_c_fails_with_and_cleanup_blocks(tmp_path: Path) -> None:
    got = parse(
        "<!-- run: local, background until: ready -->\n```sh\n"
        # a server standing in for `consortium up`: idles until Ctrl-C
        "trap 'echo stopped > stopped; exit 0' INT\necho ready\nwhile :; do sleep 0.1; done\n```\n"
        "<!-- run: local, fails with: No such -->\n```sh\nls no-such-file\n```\n"
        "<!-- run: local, after ctrl-c -->\n```sh\ncat stopped\n```\n"
        "<!-- run: local, cleanup -->\n```sh\necho cleaned > cleaned\n```\n"
        "<!-- run: local -->\n```sh\nfalse\n```\n"
    )
    todo = [b for b in got if not b.cleanup] + [b for b in got if b.cleanup]
    with _journey(tmp_path) as j, pytest.raises(ReadmeError, match=r"README.md:20 .*exit 1"):
        j.run_all(todo)
    assert (tmp_path / "stopped").read_text() == "stopped\n"  # Ctrl-C reached the block
    assert (tmp_path / "cleaned").exists()  # the cleanup ran although a block failed
    with _journey(tmp_path) as j, pytest.raises(ReadmeError, match="succeeded, but"):
        j.run(parse("<!-- run: local, fails with: x -->\n```sh\ntrue\n```\n")[0])


def test_a_background_block_that_exits_or_stays_silent_fails(tmp_path: Path) -> None:
    exits, silent = parse(
        "<!-- run: local, background until: ready -->\n```sh\necho nope\n```\n"
        "<!-- run: local, background until: ready -->\n```sh\nexec tail -f /dev/null\n```\n"
    )
    with _journey(tmp_path) as j:
        with pytest.raises(ReadmeError, match=r"exited \(0\) before showing 'ready'"):
            j.run(exits)
        with pytest.raises(ReadmeError, match=r"did not show 'ready' within 0\.5s"):
            j.run(silent, timeout=0.5)
        pids = [bg.proc.pid for bg in j.background]
    for pid in pids:  # stopped with the journey: the whole process group is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_notes_commands_become_blocks() -> None:
    text = (
        "1. Check:\n\n     kubectl -n x rollout status deployment/op\n"
        "   prose `kubectl get`\n     kubectl port-forward service/demo-client 17050:7050 &\n"
        "     consortium context from-cluster demo --org <org>\n"
    )
    got = notes_blocks(text, "NOTES.txt", {"<org>": "acme"})
    assert [b.code for b in got] == [
        "kubectl -n x rollout status deployment/op\n",
        "kubectl port-forward service/demo-client 17050:7050\n",
        "consortium context from-cluster demo --org acme\n",
    ]
    assert (
        got[1].background_until == "Forwarding from"
        and got[0].where() == "NOTES.txt:3 <!-- notes -->"
    )
    with pytest.raises(ReadmeError, match="placeholder"):
        notes_blocks(text, "NOTES.txt")
