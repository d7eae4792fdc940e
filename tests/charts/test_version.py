"""One version source: `project.version` in pyproject.toml. Every chart's `version` and
`appVersion`, the installed package's metadata (what `consortium --version` prints) and the
newest CHANGELOG.md entry must say the same, so a release bump cannot miss one of them.
Runs in the chart tier (no helm needed)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
import yaml

from tests.charts.conftest import ALL_CHARTS, ROOT

VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("chart", ALL_CHARTS, ids=lambda p: p.name)
def test_chart_versions_follow_pyproject(chart: object) -> None:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())  # type: ignore[operator]
    assert (meta["version"], str(meta["appVersion"])) == (VERSION, VERSION)


def test_installed_package_metadata_is_pyproject_version() -> None:
    # stale when pyproject changed without `make install`; the Makefile's stamp reinstalls
    assert importlib.metadata.version("consortium") == VERSION


def test_changelog_names_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"^## \[?([0-9][^\]\s]*)", text, re.MULTILINE)
    assert first is not None, "CHANGELOG.md has no '## [x.y.z]' entry"
    assert first.group(1) == VERSION
