"""Every registered strategy has a page whose quick start builds, and the docs that list the registry names list
exactly the registered ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from moalign import weighting

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in (DOCS / "strategies").glob("*.md") if p.name != "README.md")


def _quick_start(page: Path) -> dict:
    text = page.read_text()
    section = text.split("## Quick start", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_quick_start_builds(page):
    cfg = _quick_start(page)
    objectives = cfg.get("objectives", ["accuracy", "conciseness", "clarity"])
    strategy = weighting.build(cfg["strategy"], len(objectives), objectives, **(cfg.get("strategy_params") or {}))
    assert strategy.weights().shape == (len(objectives),)


def test_every_registered_strategy_has_a_page():
    pages = {_quick_start(p)["strategy"] for p in PAGES}
    assert pages == set(weighting.available()) - {"fixed"}  # fixed's row in the index links its source


def test_design_and_strategy_index_list_the_registry():
    design = (DOCS / "design.md").read_text()
    listed = re.search(r"weighting\.available\(\)\s+# (.*?)\n\n", design, re.S).group(1)
    assert sorted(re.findall(r"[a-z_]+", listed)) == weighting.available()
    index = (DOCS / "strategies" / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|", index, re.M)
    assert sorted(rows) == weighting.available()
