"""Every registered strategy has a page whose quick start is a valid config, and the docs that list the registry names
list exactly the registered ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from moalign import weighting
from moalign.config import load_config

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in (DOCS / "strategies").glob("*.md") if p.name != "README.md")


def _quick_start(page: Path) -> dict:
    section = page.read_text().split("## Quick start", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_quick_start_is_a_valid_config(page, tmp_path):
    """The quick start, on the tiny model, loads through `moalign train`'s parser: every key exists, the strategy
    builds with its parameters, and settings such as multi_objective_aggregation pass the config checks."""
    cfg = tmp_path / "quick_start.yaml"
    cfg.write_text(yaml.safe_dump({"model": "tiny", "use_cpu": True, **_quick_start(page)}))
    _, _, args = load_config(cfg, ["--output_dir", str(tmp_path / "out"), "--run_dir", str(tmp_path / "run")])
    strategy = weighting.build(args.strategy, len(args.objectives), list(args.objectives), **args.strategy_params)
    assert strategy.weights().shape == (len(args.objectives),)


def _public_strategies() -> list[str]:
    return [n for n in weighting.available() if not n.startswith("_")]  # "_...": registered by other test modules


def test_every_registered_strategy_has_a_page():
    pages = {p.stem: _quick_start(p)["strategy"] for p in PAGES}
    for name in _public_strategies():
        if name == "fixed":  # its row in the index links the source
            continue
        assert pages.get(name) == name, f"docs/strategies/{name}.md is missing or its quick start is not {name!r}"


def test_design_and_strategy_index_list_the_registry():
    design = (DOCS / "design.md").read_text()
    listed = re.search(r"weighting\.available\(\)\s+# (.*?)\n\n", design, re.S).group(1)
    assert sorted(re.findall(r"[a-z_]+", listed)) == _public_strategies()
    index = (DOCS / "strategies" / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|", index, re.M)
    assert sorted(rows) == _public_strategies()
