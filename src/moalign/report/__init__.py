"""``moalign report``: Pareto fronts, weight evolution and table metrics of one or more runs, as a self-contained
HTML page (PNG images embedded as base64, so it opens offline) with the PNGs and ``summary.json`` beside it."""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation import FrontSummary, coverage, eval_matrix, metric_space, summarize_front
from ..rundir import atomic_write_json, read_jsonl

__all__ = ["RunData", "answer_mode", "axis_label", "load_run", "build_report", "run_mode"]

# Outcomes of the embedded task are bimodal (moalign bench): a run settles into step-by-step answers or collapses to
# direct ones. Its last evaluation's clarity (share of completions with step markers) tells which.
STEP_BY_STEP_CLARITY = 0.5
MODE_NAMES = {"steps": "step-by-step", "direct": "direct"}


class RunData:
    """Everything the report needs from one run directory."""

    def __init__(self, path: Path, meta: dict[str, Any], steps: list[dict], evals: list[dict]):
        self.path, self.meta, self.steps, self.evals = path, meta, steps, evals
        self.name = meta.get("name") or path.name
        self.objectives = meta["objectives"]
        self.strategy = meta.get("strategy", {}).get("name", "?")
        self.max_completion_length = int(meta.get("config", {}).get("max_completion_length") or 1)

    def evals_for(self, split: str | None) -> list[dict]:
        return [e for e in self.evals if split is None or e.get("split") == split]


def load_run(path: str | Path) -> RunData:
    path = Path(path)
    if not (path / "run.json").exists():
        raise FileNotFoundError(f"{path} is not a run directory (no run.json); pass the run_dir of a moalign run")
    meta = json.loads((path / "run.json").read_text())
    return RunData(path, meta, read_jsonl(path / "steps.jsonl"), read_jsonl(path / "evals.jsonl"))


def answer_mode(metrics: dict[str, Any]) -> str | None:
    """``"steps"`` if an evaluation's clarity is at least 0.5 (step-by-step answers), else ``"direct"``; None when
    it has no clarity metric.

    >>> answer_mode({"clarity": 0.5}), answer_mode({"clarity": 0.1}), answer_mode({"accuracy": 1.0})
    ('steps', 'direct', None)
    """
    if "clarity" not in metrics:
        return None
    return "steps" if metrics["clarity"] >= STEP_BY_STEP_CLARITY else "direct"


def run_mode(run: RunData, split: str | None) -> str | None:
    """:func:`answer_mode` of the run's last evaluation on ``split`` (None without evaluations or clarity)."""
    ev = run.evals_for(split)
    return answer_mode(max(ev, key=lambda e: e["step"])["metrics"]) if ev else None


def axis_label(metric: str, maximize: bool) -> str:
    """An axis title that says the unit (length) and which way is better.

    >>> axis_label("length", False), axis_label("accuracy", True)
    ('length (tokens, lower is better)', 'accuracy (higher is better)')
    """
    unit = "tokens, " if metric == "length" else ""
    return f"{metric} ({unit}{'higher' if maximize else 'lower'} is better)"


def _png(fig, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(path.read_bytes()).decode()


def _method_of(run: RunData) -> str:
    return run.meta.get("method") or run.strategy


def _front_plots(runs: list[RunData], fronts: dict[str, FrontSummary], split: str | None, out: Path) -> list[str]:
    """Per pair of metrics, each run's 2-D Pareto front of its evaluations (staircase; one colour per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..pareto import nondominated

    space = metric_space(runs[0].objectives)
    metrics = [m for m, _ in space]
    pairs = list(itertools.combinations(range(len(metrics)), 2))
    color_of = _method_colors(runs)
    images = []
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        labelled = set()
        for run in runs:
            ev = run.evals_for(split)
            if not ev:
                continue
            raw = eval_matrix(ev, space)[:, [i, j]]
            method = _method_of(run)
            color = color_of[method]
            ax.scatter(raw[:, 0], raw[:, 1], s=10, alpha=0.25, color=color)
            front = raw[nondominated(raw, maximize=[space[i][1], space[j][1]])]
            front = front[np.argsort(front[:, 0])]
            # Attainment staircase: between two front points the boundary takes the value of the one that still
            # covers that x (the next point when x is maximised, the previous one when it is minimised).
            ax.step(front[:, 0], front[:, 1], where="pre" if space[i][1] else "post", color=color,
                    alpha=0.85, marker="o", ms=4, label=None if method in labelled else method)
            labelled.add(method)
        ax.set_xlabel(axis_label(*space[i]))
        ax.set_ylabel(axis_label(*space[j]))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Pareto fronts of each run's evaluated checkpoints, per pair of metrics (dots: all evaluations)")
    images.append(("fronts.png", _png(fig, out / "fronts.png")))
    if len(metrics) >= 3:
        fig = plt.figure(figsize=(6, 5))
        ax = fig.add_subplot(projection="3d")
        labelled = set()
        for run in runs:
            if run.name in fronts:
                f = np.asarray(fronts[run.name].points)
                method = _method_of(run)
                ax.scatter(f[:, 0], f[:, 1], f[:, 2], color=color_of[method],
                           label=None if method in labelled else method)
                labelled.add(method)
        ax.set_xlabel(axis_label(*space[0]))
        ax.set_ylabel(axis_label(*space[1]))
        ax.set_zlabel(axis_label(*space[2]))
        ax.legend(fontsize=8)
        images.append(("fronts3d.png", _png(fig, out / "fronts3d.png")))
    return images


def _method_colors(runs: list[RunData]) -> dict[str, str]:
    """One colour per method (seeds of a method share it), in order of first appearance."""
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(_method_of(r) for r in runs))
    return {m: colors[i % len(colors)] for i, m in enumerate(methods)}


def _series_plot(runs: list[RunData], key: str, title: str, ylabel: str, out: Path, filename: str):
    import matplotlib.pyplot as plt

    names = [o["name"] for o in runs[0].objectives]
    color_of = _method_colors(runs)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False, sharey=key == "weights")
    plotted = False
    for ax, name in zip(axes[0], names):
        labelled = set()
        for run in runs:
            xs = [s["step"] for s in run.steps if s.get(key, {}).get(name) is not None]
            ys = [s[key][name] for s in run.steps if s.get(key, {}).get(name) is not None]
            if xs:
                method = _method_of(run)
                ax.plot(xs, ys, color=color_of[method], alpha=0.8, label=None if method in labelled else method)
                labelled.add(method)
                plotted = True
        ax.set_title(name)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    if not plotted:
        plt.close(fig)
        return None
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, y=1.04)  # above the per-objective subplot titles
    return (filename, _png(fig, out / filename))


def _r_pareto_plot(runs: list[RunData], out: Path):
    """The distribution of the hypervolume meta-reward per run (arXiv 2509.11452 Fig. 3): one small histogram each."""
    import matplotlib.pyplot as plt

    data = {r.name: [s["strategy"]["r_pareto"] for s in r.steps if "r_pareto" in s.get("strategy", {})] for r in runs}
    data = {k: v for k, v in data.items() if v}
    if not data:
        return None
    cols = min(4, len(data))
    rows = math.ceil(len(data) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    bins = np.linspace(0.5, 2.0, 16)
    for ax, (name, values) in zip(axes.flat, data.items()):
        ax.hist(np.clip(values, 0.5, 2.0), bins=bins, color="#4c72b0")
        share = np.mean(np.asarray(values) > 1.5)
        ax.set_title(f"{name}\n> 1.5 on {share:.0%} of steps", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(data):]:
        ax.axis("off")
    fig.supxlabel("r_pareto (multiplier on the step's learning rate or advantages)", fontsize=9)
    fig.supylabel("steps", fontsize=9)
    fig.tight_layout()
    return ("r_pareto.png", _png(fig, out / "r_pareto.png"))


def build_report(run_dirs: list[str | Path], out: str | Path, split: str | None = None, extra_html: str = "") -> Path:
    """Write ``index.html``, the PNGs and ``summary.json`` to ``out``; returns the path of ``index.html``.

    ``extra_html`` (trusted HTML, e.g. ``moalign bench``'s tables) is placed after the run table."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [load_run(p) for p in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        for r in runs:
            r.name = f"{r.path.parent.name}/{r.path.name}"
    base = [o.get("eval_metric") or o["name"] for o in runs[0].objectives]
    for r in runs[1:]:
        if [o.get("eval_metric") or o["name"] for o in r.objectives] != base:
            raise ValueError(f"{r.path} has objectives {r.objectives}, unlike {runs[0].path}; compare like with like")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fronts = {}
    for r in runs:
        ev = r.evals_for(split)
        if ev:
            fronts[r.name] = summarize_front(ev, r.objectives, r.max_completion_length)
    if not fronts:
        raise ValueError(
            f"none of the runs has evaluations{' on split ' + repr(split) if split else ''}; "
            "train with mo_eval_steps > 0 or run `moalign eval RUN_DIR` first"
        )
    images = _front_plots(runs, fronts, split, out)
    for item in (
        _series_plot(runs, "weights", "Objective weights per step", "weight", out, "weights.png"),
        _series_plot(runs, "covariance", "Within-prompt covariance of each reward with the advantage",
                     "covariance with the advantage", out, "covariance.png"),
        _series_plot(runs, "rewards", "Mean training reward per step", "mean reward (higher is better)", out,
                     "rewards.png"),
        _r_pareto_plot(runs, out),
    ):
        if item:
            images.append(item)

    space = metric_space(runs[0].objectives)
    maximize = [mx for _, mx in space]
    dominance = {
        a: {b: coverage(np.asarray(fronts[a].points), np.asarray(fronts[b].points), maximize) for b in fronts if b != a}
        for a in fronts
    }
    summary = {
        "split": split,
        "methods": method_table(runs, fronts),
        "runs": {r.name: {"path": str(r.path), "strategy": r.strategy, **fronts[r.name].to_dict(),
                          "mode": run_mode(r, split)}
                 for r in runs if r.name in fronts},
        "coverage": dominance,
    }
    atomic_write_json(out / "summary.json", summary)
    index = out / "index.html"
    index.write_text(_html(runs, fronts, dominance, images, split, extra_html))
    return index


def _method_html(table: dict[str, dict[str, Any]], metrics: list[str]) -> str:
    if all(row["runs"] == 1 for row in table.values()):
        return ""
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{row['runs']}</td><td>{row['hv_mean']:.4f} ± {row['hv_std']:.4f}</td>"
        + "".join(f"<td>{row['front_mean_' + m]:.3f}</td>" for m in metrics)
        + f"<td>{row['steps_to_front']:.1f}</td></tr>"
        for name, row in table.items()
    )
    return (f"<h2>Per method (mean over seeds)</h2><table><tr><th>method</th><th>seeds</th><th>normalised HV</th>"
            f"{head}<th>steps to front</th></tr>{body}</table>")


def method_table(runs: list[RunData], fronts: dict[str, FrontSummary]) -> dict[str, dict[str, Any]]:
    """Per method (``run.json``'s ``method``, else the strategy name): mean ± std over its runs (seeds)."""
    groups: dict[str, list[FrontSummary]] = {}
    for r in runs:
        if r.name in fronts:
            method = r.meta.get("method") or r.strategy
            groups.setdefault(method, []).append(fronts[r.name])
    table = {}
    for method, fs in groups.items():
        hv = np.array([f.hypervolume for f in fs])
        row: dict[str, Any] = {"runs": len(fs), "hv_mean": float(hv.mean()), "hv_std": float(hv.std(ddof=1)) if len(fs) > 1 else 0.0}
        for m in fs[0].metrics:
            row[f"front_mean_{m}"] = float(np.mean([f.front_means[m] for f in fs]))
        row["steps_to_front"] = float(np.mean([f.steps_to_front for f in fs]))
        table[method] = row
    return table


def _html(runs, fronts, dominance, images, split, extra_html: str = "") -> str:
    metrics = next(iter(fronts.values())).metrics
    modes = {r.name: run_mode(r, split) for r in runs if r.name in fronts}
    show_mode = any(modes.values())
    rows = []
    for r in runs:
        if r.name not in fronts:
            continue
        f = fronts[r.name]
        cells = "".join(f"<td>{f.front_means[m]:.3f}</td>" for m in metrics)
        mode = f"<td>{MODE_NAMES.get(modes[r.name], '–')}</td>" if show_mode else ""
        rows.append(
            f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.strategy)}</td><td>{f.hypervolume:.4f}</td>"
            f"{cells}<td>{f.steps_to_front:.1f}</td><td>{len(f.steps)}</td>{mode}</tr>"
        )
    head = "".join(f"<th>front mean {html.escape(m)}</th>" for m in metrics)
    mode_head = "<th>mode (last evaluation)</th>" if show_mode else ""
    mode_text = (f" Mode = step-by-step when the run's last evaluation has clarity ≥ {STEP_BY_STEP_CLARITY} (most "
                 "answers show their steps), else direct." if show_mode else "")
    cov_rows = "".join(
        f"<tr><td>{html.escape(a)}</td>" + "".join(
            f"<td>{dominance[a][b]:.2f}</td>" if b != a else "<td>–</td>" for b in fronts
        ) + "</tr>"
        for a in fronts
    )
    cov_head = "".join(f"<th>{html.escape(b)}</th>" for b in fronts)
    imgs = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'
        for name, data in images
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>moalign report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>moalign report</h1>
<p>Split: {html.escape(str(split or 'all'))}. Front = non-dominated evaluations of each run. Hypervolume in the
normalised space (accuracy and clarity as they are, length as 1 − length/max_completion_length, reference point at
the origin). Steps to front = mean step of the front's points (Table 3 of arXiv 2509.11452).{mode_text}</p>
<table><tr><th>run</th><th>strategy</th><th>normalised HV</th>{head}<th>steps to front</th><th>front size</th>
{mode_head}</tr>
{''.join(rows)}</table>
{_method_html(method_table(runs, fronts), metrics)}
{extra_html}
<h2>Coverage C(row, column)</h2><p>Share of the column run's front weakly dominated by the row run's front.</p>
<table><tr><th></th>{cov_head}</tr>{cov_rows}</table>
{imgs}
</body></html>"""
