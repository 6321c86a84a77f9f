"""The docs hold what the code and its errors point to: every config key documented, citations of docs/design.md
name sections that exist, relative links resolve, and the examples in docs/configuration.md load."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from moalign.config import DataArguments, load_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OLD_DESIGN_NAME = "DESIGN" + ".md"  # the design document of the project's planning notes, not in the repository


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _headings(path: Path) -> list[str]:
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", path.read_text(), re.M)]


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "NOTICES", ROOT / "pyproject.toml"]
    for sub, patterns in (("src", ("*.py", "*.md")), ("examples", ("*.yaml",)), ("docs", ("*.md",)),
                          ("tests", ("*.py",)), ("benchmarks", ("*.py", "*.md"))):
        for pattern in patterns:
            files.extend((ROOT / sub).rglob(pattern))
    return [f for f in files if f.is_file()]


def test_configuration_documents_every_moalign_key():
    from trl import GRPOConfig

    from moalign.trainer import MOGRPOConfig

    text = (DOCS / "configuration.md").read_text()
    own = {f.name for f in dataclasses.fields(MOGRPOConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}
    keys = own | {f.name for f in dataclasses.fields(DataArguments)} | {"model", "env"}
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_strategy_and_estimator_lists_match_the_registries():
    """docs/configuration.md and MOGRPOConfig's help list exactly the registered strategies and estimators."""
    from moalign import weighting
    from moalign.mo_config import MOGRPOConfig
    from moalign.rl.advantages import ESTIMATOR_SUMMARIES, ESTIMATORS

    assert list(ESTIMATOR_SUMMARIES) == list(ESTIMATORS)
    strategies = [n for n in weighting.available() if not n.startswith("_")]  # "_...": registered by tests
    text = (DOCS / "configuration.md").read_text()
    for key, names in (("strategy", strategies), ("advantage_estimator", sorted(ESTIMATORS))):
        row = re.search(rf"^\| `{key}` \| `[a-z_]+` \| ([^|]*)\|", text, re.M).group(1)
        # strategy row: "`fixed`, `hypervolume`, ... One page each..."; estimator row: "`grpo` (...), `rloo` (...)"
        pattern, part = (r"`([a-z_]+)`", row.split(".")[0]) if key == "strategy" else (r"`([a-z_]+)` \(", row)
        listed = re.findall(pattern, part)
        assert sorted(set(listed)) == names, f"docs/configuration.md's {key} row lists {listed}"
    fields = {f.name: f for f in dataclasses.fields(MOGRPOConfig)}
    for key, names in (("strategy", strategies), ("advantage_estimator", list(ESTIMATORS))):
        listed = re.findall(r"\b[a-z_]+\b", fields[key].metadata["help"])
        assert all(name in listed for name in names), (key, fields[key].metadata["help"])


def test_unknown_key_error_points_to_an_existing_page(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny\nlearning_rat: 1e-6\n")
    with pytest.raises(ValueError, match="docs/configuration.md"):
        load_config(cfg)
    assert (ROOT / "docs" / "configuration.md").is_file()


def test_configuration_examples_load(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / "configuration.md").read_text(), re.S)
    full = [yaml.safe_load(b) for b in blocks if "model:" in b]
    assert len(full) >= 2
    for i, raw in enumerate(full):
        cfg = tmp_path / f"example{i}.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        load_config(cfg, ["--output_dir", str(tmp_path / f"out{i}"), "--run_dir", str(tmp_path / f"run{i}")])


def test_design_citations_name_existing_sections():
    sections = set(_headings(DOCS / "design.md"))
    cite = re.compile(r"docs/design\.md, \"?([A-Z][A-Za-z ]+?)\"?[);,]")
    bad, seen = [], 0
    for path in _text_files():
        text = path.read_text()
        assert OLD_DESIGN_NAME not in text, f"{path.relative_to(ROOT)} cites {OLD_DESIGN_NAME}; cite docs/design.md"
        for m in cite.finditer(text):
            seen += 1
            if m.group(1) not in sections:
                bad.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert seen > 10  # the examples and docstrings cite it
    assert not bad, f"citations of sections docs/design.md does not have ({sorted(sections)}):\n" + "\n".join(bad)


def test_relative_links_in_docs_resolve():
    bad = []
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code blocks
        prose = re.sub(r"`[^`\n]*`", "", prose)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in {_slug(h) for h in _headings(dest)}:
                bad.append(f"{page.relative_to(ROOT)}: {target} (no such section)")
    assert not bad, "broken links:\n" + "\n".join(bad)
