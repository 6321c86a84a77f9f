"""``moalign meta-eval``: sweep preferences, build each aggregation's front, compare with single-policy runs.

For every aggregation and every preference ``p`` of a simplex grid, the experts are combined for ``p`` and decode the
first ``rows`` problems of the test split greedily (or sampled at ``temperature`` > 0, as the bench's sampled test
evaluations; every preference then draws from the same seeded streams, batch by batch); the mean per-objective scores
give one point in the normalised space of :func:`moalign.evaluation.normalised_point` (length as
``1 - tokens / max_new_tokens``, all maximised).
Single-policy runs (``moalign train`` / ``moalign demo`` run directories) contribute the points of their test-split
evaluations; the base model (adapters off) is one more point.

Indicators per method (all in the normalised space):

* ``hypervolume`` -- :func:`moalign.pareto.hypervolume`, reference point at the origin;
* ``igd_plus`` -- IGD+ (Ishibuchi et al., EMO 2015) from ``pymoo.indicators.igd_plus``, against the non-dominated
  union of every method's points (the best front known), lower is better;
* ``sparsity`` -- PGMORL's (Xu et al., ICML 2020, Eq. 5) mean squared gap between neighbours of the front sorted per
  objective, lower is denser;
* ``expected_utility`` -- mean over the preference grid of ``max_{x ∈ front} p·x`` (Zintgraf et al., 2015);
* ``max_utility_loss`` -- ``max_p (max_{x ∈ reference} p·x − max_{x ∈ front} p·x)``;
* ``steered_utility`` -- meta-policies only: mean of ``p·x(p)``, the utility of the point produced *for* ``p``;
* ``cardinality`` -- distinct non-dominated points;
* ``training_steps`` -- RL steps spent (experts: the sum over experts);
* ``ms_per_token`` and ``kv_cache_bytes_per_row`` -- inference cost measured during the sweep.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .gate import completion_scores, simplex_grid

__all__ = ["front_indicators", "meta_eval", "preference_grid", "sparsity"]

logger = logging.getLogger(__name__)


def sparsity(front: np.ndarray) -> float:
    """PGMORL sparsity: ``1/(n-1) Σ_j Σ_i (P_j(i) − P_j(i+1))²`` over the front sorted along each objective j.

    >>> sparsity(np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]))
    0.5
    """
    f = np.atleast_2d(np.asarray(front, dtype=np.float64))
    if len(f) < 2:
        return 0.0
    s = np.sort(f, axis=0)
    return float(np.sum(np.diff(s, axis=0) ** 2) / (len(f) - 1))


def preference_grid(k: int, grid_step: float, centroid: bool = False) -> np.ndarray:
    """The swept preferences: :func:`simplex_grid` and, with ``centroid``, the uniform preference ``1/k`` appended
    when the grid lacks it (at ``k`` = 4 and step 0.5 the grid holds the vertices and edge midpoints only).

    >>> preference_grid(4, 0.5, centroid=True)[-1].tolist(), len(preference_grid(4, 0.5))
    ([0.25, 0.25, 0.25, 0.25], 10)
    """
    grid = np.asarray(simplex_grid(k, grid_step), dtype=np.float64)
    if centroid and not np.any(np.all(np.isclose(grid, 1.0 / k), axis=1)):
        grid = np.vstack([grid, np.full(k, 1.0 / k)])
    return grid


def _front(points: np.ndarray) -> np.ndarray:
    from .. import pareto

    pts = np.unique(np.atleast_2d(points), axis=0)
    return pts[pareto.nondominated(pts, maximize=True)]


def front_indicators(points: np.ndarray, reference: np.ndarray, grid: np.ndarray) -> dict[str, float]:
    """Indicators of one method's points against the reference front, all objectives maximised in [0, 1]."""
    from pymoo.indicators.igd_plus import IGDPlus

    from .. import pareto

    front = _front(points)
    best = lambda f: (grid @ f.T).max(axis=1)  # noqa: E731 - (P,) best utility per preference
    return {
        "hypervolume": float(pareto.hypervolume(front, np.zeros(front.shape[1]), maximize=True)),
        "igd_plus": float(IGDPlus(-reference)(-front)),  # pymoo minimises
        "sparsity": sparsity(front),
        "expected_utility": float(best(front).mean()),
        "max_utility_loss": float((best(reference) - best(front)).max()),
        "cardinality": int(len(front)),
    }


def _baseline_points(run_dir: Path, split: str, max_new_tokens: int, objectives: list[str]) -> tuple[np.ndarray, int]:
    from ..evaluation import metric_space
    from ..rundir import read_jsonl
    from ..scoring import normalised_length

    meta = json.loads((run_dir / "run.json").read_text())
    space = metric_space(meta["objectives"])
    names = [o["name"] for o in meta["objectives"]]
    if names != objectives:
        raise ValueError(f"{run_dir} has objectives {names}, the experts {objectives}; compare runs of the same task")
    evals = [e for e in read_jsonl(run_dir / "evals.jsonl") if e.get("split") == split]
    if not evals:
        raise ValueError(f"{run_dir}/evals.jsonl has no evaluation on split {split!r}")
    pts = []
    for e in evals:
        row = []
        for metric, _ in space:
            v = float(e["metrics"][metric])
            row.append(normalised_length(v, max_new_tokens) if metric == "length" else v)
        pts.append(row)
    steps = [int(json.loads(line)["step"]) for line in (run_dir / "steps.jsonl").read_text().splitlines() if line]
    return np.asarray(pts), max(steps, default=0)


def meta_eval(
    experts_dir: str | Path,
    *,
    aggregations: tuple[str, ...] = ("parameter", "logit", "hidden"),
    grid_step: float = 0.5,
    rows: int = 32,
    split: str = "test",
    max_new_tokens: int = 64,
    batch_size: int = 16,
    baselines: tuple[str | Path, ...] = (),
    gate_steps: int = 0,
    gate_aggregation: str = "parameter",
    temperature: float = 0.0,
    seed: int = 0,
    centroid: bool = False,
    out: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run the sweep; writes ``<out>/summary.json``, ``sweep.jsonl`` and ``fronts.png``; returns the summary path.

    ``temperature`` 0 decodes greedily; above 0 every policy samples at that temperature, batch ``b`` from seed
    ``seed + b`` (the same streams for every preference and for the base model). ``centroid`` adds the uniform
    preference to the grid (:func:`preference_grid`)."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..objectives import build_objectives
    from .aggregate import build
    from .experts import load_experts, load_splits

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), but got {temperature}")
    if temperature > 0 and gate_steps:
        raise ValueError("the gate is evaluated greedily; sample (temperature > 0) without it (gate_steps 0)")
    sampling = {"do_sample": True, "temperature": float(temperature)} if temperature > 0 else {}
    if gate_steps and gate_aggregation not in aggregations:
        raise ValueError(f"gate_aggregation {gate_aggregation!r} must be one of the swept aggregations {aggregations} "
                         "(its sweep is the gate's regret oracle); add it to aggregations")
    experts_dir = Path(experts_dir)
    experts = load_experts(experts_dir)
    manifest = experts.manifest
    # the experts' objectives entries (a reward model's heads, its range); manifests before them hold names only
    objectives = build_objectives(manifest.get("objective_specs") or list(experts.objectives))
    cfg = manifest.get("config", {})
    splits = load_splits(cfg.get("dataset", "synthetic"), cfg.get("dataset_kwargs", {}))
    if split not in splits:
        raise ValueError(f"split {split!r} not in the dataset; available: {', '.join(splits)}")
    eval_rows = [dict(r) for r in splits[split].select(range(min(rows, len(splits[split]))))]
    k = len(experts.objectives)
    grid = preference_grid(k, grid_step, centroid)
    out = Path(out) if out is not None else experts_dir / "meta_eval"
    out.mkdir(parents=True, exist_ok=True)
    sweep_path = out / "sweep.jsonl"
    sweep_path.write_text("")

    def run_policy(gen_fn) -> dict[str, Any]:
        texts, ids, secs, kv = [], [], 0.0, 0
        for b, s in enumerate(range(0, len(eval_rows), batch_size)):
            g = gen_fn([r["prompt"] for r in eval_rows[s:s + batch_size]], seed + b)
            texts += g.texts
            ids += g.token_ids
            secs += g.seconds
            kv = max(kv, g.kv_cache_bytes // max(len(g.texts), 1))
        scores = completion_scores(objectives, eval_rows, texts, ids, max_new_tokens)
        raw = {o.name: float(scores[:, j].mean()) for j, o in enumerate(objectives)}
        raw["length"] = float(np.mean([len(t) for t in ids]))
        n_tok = sum(len(t) for t in ids)
        return {"point": scores.mean(0).tolist(), "metrics": raw, "seconds": secs,
                "ms_per_token": 1000 * secs / max(n_tok, 1), "kv_cache_bytes_per_row": kv}

    methods: dict[str, dict[str, Any]] = {}
    one_hot_cache: dict[int, dict[str, Any]] = {}
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    started = time.perf_counter()
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("meta-eval", total=len(aggregations) * len(grid) + 1 + (gate_steps + len(grid)) * bool(
            gate_steps))
        bar.update(task, description="base model")
        with torch.no_grad(), experts.model.disable_adapter():
            base = run_policy(lambda ps, b: _plain_generate(experts, ps, max_new_tokens, seed=b, **sampling))
        bar.advance(task)
        methods["base"] = {"kind": "base", "points": [base["point"]], "training_steps": 0}
        for agg_name in aggregations:
            agg = build(agg_name, experts)
            records = []
            for p in grid:
                bar.update(task, description=f"{agg_name}: preference {np.round(p, 2).tolist()}")
                mixture = experts.mixture_for(p)
                hot = int(np.argmax(mixture)) if np.isclose(mixture.max(), 1.0) else None
                if hot is not None and hot in one_hot_cache:  # a one-hot mixture is the same expert for every level
                    rec = dict(one_hot_cache[hot])
                else:
                    rec = run_policy(lambda ps, b, m=mixture: agg.generate(
                        ps, m, max_new_tokens=max_new_tokens, **({**sampling, "seed": b} if sampling else {})))
                    if hot is not None:
                        one_hot_cache[hot] = rec
                rec = {**rec, "aggregation": agg_name, "preference": p.tolist(), "mixture": mixture.tolist()}
                records.append(rec)
                with sweep_path.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                bar.advance(task)
            mixed = [r for r in records if not np.isclose(max(r["mixture"]), 1.0)] or records
            methods[agg_name] = {
                "kind": "meta", "points": [r["point"] for r in records], "preferences": grid.tolist(),
                "training_steps": int(manifest.get("training_steps", 0)),
                "steered_utility": float(np.mean([np.dot(r["preference"], r["point"]) for r in records])),
                "ms_per_token": float(np.mean([r["ms_per_token"] for r in mixed])),
                "kv_cache_bytes_per_row": int(np.max([r["kv_cache_bytes_per_row"] for r in mixed])),
            }
        if gate_steps:
            methods[f"gate:{gate_aggregation}"] = _gate_method(
                experts, objectives, splits, grid, methods, gate_steps, gate_aggregation, max_new_tokens,
                experts_dir, out, run_policy, bar, task)
    for b in baselines:
        b = Path(b)
        pts, steps = _baseline_points(b, split, max_new_tokens, experts.objectives)
        methods[b.name] = {"kind": "single-policy", "points": pts.tolist(), "training_steps": steps}
    reference = _front(np.concatenate([np.asarray(m["points"]) for m in methods.values()]))
    for m in methods.values():
        m.update(front_indicators(np.asarray(m["points"]), reference, grid))
    summary = {
        "experts_dir": str(experts_dir), "objectives": experts.objectives, "split": split, "rows": len(eval_rows),
        "grid_step": grid_step, "max_new_tokens": max_new_tokens, "temperature": float(temperature),
        "seed": int(seed) if temperature > 0 else None, "centroid": bool(centroid),
        "reference_front": reference.tolist(), "seconds": round(time.perf_counter() - started, 1), "methods": methods,
    }
    from ..rundir import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    _plot_fronts(methods, experts.objectives, out / "fronts.png")
    return out / "summary.json"


def _plain_generate(experts, prompts, max_new_tokens, *, do_sample: bool = False, temperature: float = 1.0,
                    seed: int | None = None):
    import torch

    from .aggregate.base import Generation

    tok, model = experts.tokenizer, experts.model
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if do_sample else \
        {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if do_sample and seed is not None:  # generate() has no generator argument (as the parameter aggregation)
        torch.manual_seed(int(seed))
    t = time.perf_counter()
    out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **sampling)
    eos = tok.eos_token_id
    ids = [s[: s.index(eos) + 1] if eos in s else s for s in out[:, enc["input_ids"].shape[1]:].tolist()]
    return Generation(texts=[tok.decode(s, skip_special_tokens=True) for s in ids], token_ids=ids, mixture=[],
                      aggregation="base", seconds=time.perf_counter() - t)


def _gate_method(experts, objectives, splits, grid, methods, steps, aggregation, max_new_tokens, experts_dir, out,
                 run_policy, bar, task) -> dict[str, Any]:
    from .gate import MixtureGate
    from .policy import generate, train_gate

    sweep = methods[aggregation]
    arms = [experts.mixture_for(p).tolist() for p in grid]  # the sweep's mixtures: the oracle table applies
    table = np.asarray(sweep["points"])  # (arms, K) expected scores of each arm on the test rows

    def oracle(p, arm):
        u = table @ p
        return float(u.max()), float(u[arm])

    gate = MixtureGate(arms, num_objectives=len(objectives))
    train_rows = [dict(r) for r in splits["val" if "val" in splits else "train"]]
    log = out / "gate.jsonl"
    log.write_text("")
    bar.update(task, description=f"gate: {steps} online steps ({aggregation})")
    train_gate(experts, gate, train_rows, objectives, steps=steps, aggregation=aggregation,
               preferences=grid.tolist(), max_new_tokens=max_new_tokens, log_path=log, oracle=oracle,
               progress=lambda n: bar.advance(task, n))
    gate.save(experts_dir / "gate.json")
    from .aggregate import build

    agg = build(aggregation, experts)
    points = []
    for p in grid:
        rec = run_policy(lambda ps, _b, p=p: generate(experts, ps, p, gate=gate, aggregator=agg,
                                                  max_new_tokens=max_new_tokens))
        points.append(rec["point"])
        bar.advance(task)
    regrets = [json.loads(line).get("regret", 0.0) for line in log.read_text().splitlines() if line]
    return {"kind": "meta+gate", "points": points, "preferences": grid.tolist(),
            "training_steps": int(experts.manifest.get("training_steps", 0)),
            "steered_utility": float(np.mean([np.dot(p, x) for p, x in zip(grid, points)])),
            "gate_steps": steps, "gate_state": str(experts_dir / "gate.json"), "gate_log": str(log),
            "cumulative_regret": float(np.sum(regrets))}


def _plot_fronts(methods: dict[str, dict[str, Any]], objectives: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))] or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4), squeeze=False)
    markers = {"meta": "o", "meta+gate": "*", "single-policy": "s", "base": "x"}
    for ax, (i, j) in zip(axes[0], pairs):
        for name, m in methods.items():
            pts = np.asarray(m["points"])
            ax.scatter(pts[:, i], pts[:, j], label=name, marker=markers.get(m["kind"], "o"), alpha=0.7)
        ax.set_xlabel(objectives[i])
        ax.set_ylabel(objectives[j])
    axes[0][0].legend(fontsize=7)
    fig.suptitle("meta-eval: points per method (normalised, higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
