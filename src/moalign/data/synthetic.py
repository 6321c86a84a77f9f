"""The synthetic arithmetic task of ``moalign demo``: short chained sums whose solutions trade objectives off.

A problem is a chain of 3-4 small positive integers joined by ``+`` and ``-`` (the running result never goes
below zero), asked as ``"12+7-4=?"``. Prompts are terse on purpose: the demo model reads one character per token on
two CPU cores, so every character costs training time.

Reference solutions come in three styles, written so that the three demo objectives (accuracy, conciseness, clarity;
see :mod:`moalign.objectives`) disagree about which one is best:

=========  ==========================================================  ========  ==========  =======
style      example (``12+7-4=?``)                                       clarity   length      wrong
=========  ==========================================================  ========  ==========  =======
steps      ``First, 12+7=19.\\nThen, 19-4=15.\\n\\boxed{15}``               1         ~41 chars   5 %
direct     ``\\boxed{15}``                                                 0         ~10 chars   35 %
verbose    ``12 plus 7 is 19, minus 4 is 15, so \\boxed{15}``              0         ~45 chars   20 %
=========  ==========================================================  ========  ==========  =======

``steps`` is clear, long and the most accurate; ``direct`` is short and the least accurate; ``verbose`` is long and
unclear (dominated: a good policy learns to drop it). The default warm-start mixture is 30 % steps, 40 % direct,
30 % verbose (:attr:`SyntheticConfig.style_mix`). The "wrong" column is the default share of warm-start examples
of that style whose final answer is wrong (:attr:`SyntheticConfig.wrong_share`), so accuracy trades against
conciseness by construction; a tiny model also finds the one-shot ``direct`` sum harder than a chain of two-operand
sums, which widens the gap. A wrong solution contains one arithmetic slip (a result off by 1 or 2) carried through
the remaining steps, as a careless solver would.

Every final answer sits in ``\\boxed{}``, so the math objectives apply unchanged. See ``docs/demo_task.md`` for the
calibration of the warm start on this task.

The task is one member of a family (:attr:`SyntheticConfig.variant`, names in :data:`VARIANTS`). The styles above are
the default member, ``coupled``: one choice (steps or not) moves all three objectives together. In the ``async``
member three independent habits of the warm-start data each move one objective, so each objective can be learned on
its own and at its own speed:

=================  ======================================================  ==============  ===================
habit              example (``17+5-4=?``)                                   objective       warm-start share
=================  ======================================================  ==============  ===================
numbered lines     ``1. 17+5=22`` instead of ``-> 17+5=22`` (same length)    clarity         ``marker_share``
filler line        ``\\nHope this helps!`` after the answer (+17 chars)      conciseness     ``filler_share``
forgotten carry    ``17+5=12``: a carry/borrow dropped, off by 10           accuracy        ``carry_slip``
=================  ======================================================  ==============  ===================

``carry_slip`` is the share of carry/borrow operations written with the carry forgotten (the slip is carried
through the later lines); above 0.5 the warm-start policy's *most likely* result is wrong whenever a carry is due,
so greedy decoding is wrong too and RL has to raise a rare habit in many different contexts: accuracy is the slow
objective, conciseness (one choice after the answer, rewarded against a moving mean) a late one, and clarity (one
early choice, already made in 75 % of the warm-start solutions) the fast one. ``docs/demo_task.md`` shows the
saturation curves.

>>> ds = load_synthetic(seed=0, n_train=4, n_val=2, n_test=2)
>>> sorted(ds), ds["train"].column_names
(['test', 'train', 'val'], ['prompt', 'answer', 'problem', 'solution', 'n_operands'])
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Any

from ..objectives.clarity import count_step_markers
from ..objectives.habit import HABITS, has_habit

__all__ = [
    "ASYNC_FILLER",
    "DIFFICULTIES",
    "HABIT_SHARES",
    "STYLES",
    "SyntheticConfig",
    "VARIANTS",
    "async_habits",
    "classify_style",
    "count_step_markers",
    "generate_problem",
    "habits_shown",
    "load_synthetic",
    "render_async_solution",
    "render_habits_solution",
    "render_solution",
    "sft_examples",
]

STYLES = ("steps", "direct", "verbose")
VARIANTS = ("coupled", "async", "habits")
"""Members of the task family (:attr:`SyntheticConfig.variant`); ``coupled`` is the default."""

ASYNC_FILLER = "Hope this helps!"
"""The filler line of the ``async`` member's padding habit (after the final answer)."""
_ASYNC_UNMARKED = "-> "  # same length as "1. ", and not a step marker for Clarity
_ASYNC_FIELDS = ("marker_share", "filler_share", "carry_slip")

HABIT_SHARES: dict[str, float] = {
    "numbered": 0.75, "signoff": 0.3, "period": 0.6, "header": 0.2, "spaced": 0.5, "label": 0.4, "gap": 0.85,
}
"""Share of the ``habits`` member's warm-start solutions that show each habit (:data:`~moalign.objectives.HABITS`),
each drawn independently. Spread from 0.2 to 0.85 so that the habits are learned at different speeds: one already
shown in most samples saturates within a few RL steps, a rare one late (docs/demo_task.md has the curves)."""

# difficulty -> (min_operands, max_operands, max_first_operand, max_operand)
DIFFICULTIES: dict[int, tuple[int, int, int, int]] = {
    1: (3, 3, 9, 9),
    2: (3, 4, 19, 9),
    3: (3, 4, 19, 19),
    4: (3, 4, 99, 99),
}

_BOXED_ONLY = re.compile(r"\s*\\boxed\{[^{}]*\}\s*")

_STEP_WORDS = ("First", "Then", "Next")  # the 1st, 2nd and later lines of a `steps` solution
_OP_WORDS = {"+": "plus", "-": "minus"}


@dataclass
class SyntheticConfig:
    """Everything that determines the synthetic task; equal configs give identical data.

    ``min_operands``, ``max_operands``, ``max_first_operand`` and ``max_operand`` default to the values of
    ``difficulty`` (:data:`DIFFICULTIES`); set any of them to override that preset.
    """

    seed: int = 0
    """Seed of the problem stream (the splits and, with :func:`sft_examples`'s own seed, the warm-start data)."""
    n_train: int = 2000
    """Problems in the train split (the RL prompts)."""
    n_val: int = 200
    """Problems in the val split (periodic evaluation, warm-start calibration)."""
    n_test: int = 200
    """Problems in the test split."""
    difficulty: int = 2
    """Operand preset, 1 (``a+b-c``, all <= 9) to 4 (3-4 operands <= 99); see :data:`DIFFICULTIES`."""
    min_operands: int | None = None
    """Fewest numbers in a problem (>= 2). None: from ``difficulty``."""
    max_operands: int | None = None
    """Most numbers in a problem. None: from ``difficulty``."""
    max_first_operand: int | None = None
    """Largest first number. None: from ``difficulty``."""
    max_operand: int | None = None
    """Largest later number. None: from ``difficulty``."""
    prompt_template: str = "{expr}=?"
    """User message; ``{expr}`` is replaced by the expression, e.g. ``"Compute {expr}."``. Other braces are kept
    as written (``"What is {expr}? Put the final answer in \\boxed{}."``)."""
    style_mix: dict[str, float] = field(default_factory=lambda: {"steps": 0.3, "direct": 0.4, "verbose": 0.3})
    """Share of each solution style in :func:`sft_examples` (normalised to sum to 1)."""
    wrong_share: dict[str, float] = field(default_factory=lambda: {"steps": 0.05, "direct": 0.35, "verbose": 0.2})
    """Share of :func:`sft_examples` of each style whose final answer is wrong."""
    variant: str = "coupled"
    """Member of the task family (:data:`VARIANTS`): ``coupled`` (the styles above; ``style_mix``/``wrong_share``
    apply) or ``async`` (independent habits per objective; ``marker_share``/``filler_share``/``carry_slip`` apply).
    The problems and splits are the same for both; only the warm-start solutions differ."""
    marker_share: float = 0.75
    """``async``: share of warm-start solutions with numbered lines (``1. ``, ``2. ``: clear) instead of ``-> ``."""
    filler_share: float = 0.6
    """``async``: share of warm-start solutions that end with the filler line :data:`ASYNC_FILLER` (long)."""
    carry_slip: float = 0.8
    """``async``: share of carry/borrow operations in warm-start solutions written with the carry forgotten (the
    result off by 10, carried through). Higher: accuracy starts lower and is learned later."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, but got {self.variant!r}")
        for name in _ASYNC_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], but got {value!r}")
        if self.variant == "coupled":
            changed = [n for n in _ASYNC_FIELDS if getattr(self, n) != _DEFAULTS[n]]
            if changed:
                raise ValueError(f"{', '.join(changed)} only apply to variant='async'; set variant: async or drop them")
        elif self.variant == "habits":
            changed = [n for n in ("style_mix", "wrong_share", "marker_share", "filler_share")
                       if getattr(self, n) != _DEFAULTS[n]]
            if changed:
                raise ValueError(f"{', '.join(changed)} do not apply to variant='habits' (its habit shares are "
                                 "HABIT_SHARES; carry_slip sets its accuracy); drop them")
        else:
            changed = [n for n in ("style_mix", "wrong_share") if getattr(self, n) != _DEFAULTS[n]]
            if changed:
                raise ValueError(f"{', '.join(changed)} only apply to variant='coupled'; the async member's habits are "
                                 f"set by {', '.join(_ASYNC_FIELDS)}")
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)}, but got {self.difficulty!r}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, but got {getattr(self, name)}")
        lo, hi, first, rest = self.operand_ranges()
        if lo < 2 or hi < lo:
            raise ValueError(
                f"need 2 <= min_operands <= max_operands, but got min_operands={lo}, max_operands={hi}"
            )
        if first < 1 or rest < 1:
            raise ValueError(f"max_first_operand and max_operand must be >= 1, but got {first} and {rest}")
        if "{expr}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain '{{expr}}', but got {self.prompt_template!r}")
        for name in ("style_mix", "wrong_share"):
            table = getattr(self, name)
            unknown = set(table) - set(STYLES)
            if unknown:
                raise ValueError(f"{name} has unknown styles {sorted(unknown)}; valid styles: {', '.join(STYLES)}")
            upper = 1.0 if name == "wrong_share" else float("inf")
            bad = {k: v for k, v in table.items() if not 0.0 <= float(v) <= upper}
            if bad:
                bounds = "in [0, 1]" if name == "wrong_share" else ">= 0"
                raise ValueError(f"{name} values must be {bounds}, but got {bad}")
        if sum(self.style_mix.values()) <= 0:
            raise ValueError(f"style_mix must give some style a positive share, but got {self.style_mix}")

    def operand_ranges(self) -> tuple[int, int, int, int]:
        """``(min_operands, max_operands, max_first_operand, max_operand)`` after applying the overrides."""
        preset = DIFFICULTIES[self.difficulty]
        explicit = (self.min_operands, self.max_operands, self.max_first_operand, self.max_operand)
        return tuple(p if e is None else int(e) for p, e in zip(preset, explicit))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that determine the data: :meth:`to_dict` without the ``async`` member's fields for a ``coupled``
        config (they do not affect it), so a ``coupled`` config keeps the identity (and warm-start cache key) it had
        before the family existed."""
        data = self.to_dict()
        if self.variant == "coupled":
            for name in ("variant", *_ASYNC_FIELDS):
                data.pop(name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming the valid ones."""
        return _make_config(**data)


_DEFAULTS = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
             for f in dataclasses.fields(SyntheticConfig)}


# ----------------------------------------------------------------------------------------------------------- problems


def generate_problem(rng: random.Random, cfg: SyntheticConfig) -> dict[str, Any]:
    """Draw one problem.

    Returns a dict with ``problem`` (the user message), ``expr`` (e.g. ``"12+7-4"``), ``operands``, ``ops``,
    ``values`` (running results after each operation), ``answer`` (``str`` of the last value), ``n_operands`` and
    ``solution`` (the correct ``steps`` solution).
    """
    lo, hi, max_first, max_rest = cfg.operand_ranges()
    k = rng.randint(lo, hi)
    operands = [rng.randint(1, max_first)]
    ops: list[str] = []
    values: list[int] = []
    running = operands[0]
    for _ in range(k - 1):
        op = rng.choice("+-")
        if op == "-" and running < 1:
            op = "+"
        b = rng.randint(1, max_rest if op == "+" else min(max_rest, running))
        running = running + b if op == "+" else running - b
        operands.append(b)
        ops.append(op)
        values.append(running)
    expr = str(operands[0]) + "".join(f"{op}{b}" for op, b in zip(ops, operands[1:]))
    prob = {
        "problem": cfg.prompt_template.replace("{expr}", expr),  # not str.format: templates may hold \boxed{}
        "expr": expr,
        "operands": operands,
        "ops": ops,
        "values": values,
        "answer": str(values[-1]),
        "n_operands": k,
    }
    if cfg.variant == "coupled":
        prob["solution"] = render_solution(prob, "steps")
    elif cfg.variant == "async":
        prob["solution"] = render_async_solution(prob)
    else:
        prob["solution"] = render_habits_solution(prob, set(HABITS))
    return prob


def render_solution(prob: dict[str, Any], style: str, slip: tuple[int, int] | None = None) -> str:
    """Write ``prob``'s solution in ``style`` (one of :data:`STYLES`).

    ``slip=(i, delta)`` makes the result of operation ``i`` off by ``delta`` and carries the error through the later
    operations (so the final answer is off by ``delta`` too).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, but got {style!r}")
    values = list(prob["values"])
    if slip is not None:
        i, delta = slip
        values = values[:i] + [v + delta for v in values[i:]]
    lefts = [prob["operands"][0], *values[:-1]]
    boxed = f"\\boxed{{{values[-1]}}}"
    if style == "direct":
        return boxed
    if style == "steps":
        lines = [
            f"{_STEP_WORDS[min(i, 2)]}, {a}{op}{b}={v}."
            for i, (a, op, b, v) in enumerate(zip(lefts, prob["ops"], prob["operands"][1:], values))
        ]
        return "\n".join([*lines, boxed])
    parts = [f"{prob['operands'][0]} {_OP_WORDS[prob['ops'][0]]} {prob['operands'][1]} is {values[0]}"]
    parts += [f"{_OP_WORDS[op]} {b} is {v}" for op, b, v in zip(prob["ops"][1:], prob["operands"][2:], values[1:])]
    return ", ".join(parts) + f", so {boxed}"


def _needs_carry(a: int, op: str, b: int) -> bool:
    """A carry (``+``: the units digits sum to 10 or more) or a borrow (``-``: the units digit of ``a`` is smaller)."""
    return (a % 10 + b % 10 >= 10) if op == "+" else (a % 10 < b % 10)


def _stays_non_negative(value: int, rest: list[tuple[str, int]]) -> bool:
    for op, b in rest:
        if value < 0:
            return False
        value = value + b if op == "+" else value - b
    return value >= 0


def render_async_solution(
    prob: dict[str, Any], numbered: bool = True, filler: bool = False, forget: Any = (),
) -> str:
    """Write ``prob``'s solution in the ``async`` member's format: one line per operation, then ``\\boxed{}``.

    Args:
        numbered: lines start ``1. ``, ``2. `` (step markers: clear) instead of ``-> `` (same length, unclear).
        filler: end with a line :data:`ASYNC_FILLER`.
        forget: a set of operation indices, or a callable ``(i) -> bool`` asked at each operation that needs a
            carry or borrow: where true, the carry is forgotten (``17+5=12``, ``23-7=26``) and the written result is
            carried into the next operation. Not asked where forgetting would drive a later result below zero.

    >>> p = {"operands": [17, 5, 4], "ops": ["+", "-"], "values": [22, 18]}
    >>> print(render_async_solution(p, numbered=False, filler=True, forget={0}))
    -> 17+5=12
    -> 12-4=8
    \\boxed{8}
    Hope this helps!
    """
    operations = _written_operations(prob, forget)
    lines = [f"{f'{i + 1}. ' if numbered else _ASYNC_UNMARKED}{a}{op}{b}={value}"
             for i, (a, op, b, value) in enumerate(operations)]
    lines.append(f"\\boxed{{{operations[-1][3]}}}")
    if filler:
        lines.append(ASYNC_FILLER)
    return "\n".join(lines)


def _written_operations(prob: dict[str, Any], forget: Any) -> list[tuple[int, str, int, int]]:
    """``(left, op, right, written result)`` per operation, with carries forgotten as ``forget`` says (see
    :func:`render_async_solution`); a forgotten carry's result is carried into the next operation."""
    asks = forget if callable(forget) else (lambda i, s=frozenset(forget): i in s)
    steps = list(zip(prob["ops"], prob["operands"][1:]))
    running = prob["operands"][0]
    out = []
    for i, (op, b) in enumerate(steps):
        value = running + b if op == "+" else running - b
        # a forgotten carry is allowed only where the rest, done right, never goes below zero (as in the problems)
        if _needs_carry(running, op, b) and _stays_non_negative(value - 10 if op == "+" else value + 10, steps[i + 1:]):
            if asks(i):
                value += -10 if op == "+" else 10
        out.append((running, op, b, value))
        running = value
    return out


def render_habits_solution(prob: dict[str, Any], habits: Any = (), forget: Any = ()) -> str:
    """Write ``prob``'s solution in the ``habits`` member's format, showing the habits named in ``habits`` (a
    collection of :data:`~moalign.objectives.HABITS`; :mod:`moalign.objectives.habit` says what each one writes).
    ``forget`` is as in :func:`render_async_solution`.

    >>> p = {"operands": [17, 5, 4], "ops": ["+", "-"], "values": [22, 18]}
    >>> print(render_habits_solution(p, {"numbered", "spaced", "label"}))
    1. 17+5 = 22
    2. 22-4 = 18
    A:\\boxed{18}
    >>> print(render_habits_solution(p, {"header", "period", "gap", "signoff"}, forget={0}))
    #
    -> 17+5=12.
    -> 12-4=8.
    <BLANKLINE>
    \\boxed{8}
    OK
    """
    unknown = sorted(set(habits) - set(HABITS))
    if unknown:
        raise ValueError(f"unknown habits {unknown}; valid: {', '.join(HABITS)}")
    equals = " = " if "spaced" in habits else "="
    end = "." if "period" in habits else ""
    operations = _written_operations(prob, forget)
    lines = ["#"] if "header" in habits else []
    lines += [f"{f'{i + 1}. ' if 'numbered' in habits else _ASYNC_UNMARKED}{a}{op}{b}{equals}{value}{end}"
              for i, (a, op, b, value) in enumerate(operations)]
    if "gap" in habits:
        lines.append("")
    lines.append(f"{'A:' if 'label' in habits else ''}\\boxed{{{operations[-1][3]}}}")
    if "signoff" in habits:
        lines.append("OK")
    return "\n".join(lines)


def _draw_slip(rng: random.Random, prob: dict[str, Any]) -> tuple[int, int]:
    """A random arithmetic slip (operation index, delta in ±1, ±2) that keeps every running value non-negative."""
    values = prob["values"]
    i = rng.randrange(len(values))
    deltas = [d for d in (-2, -1, 1, 2) if min(values[i:]) + d >= 0]
    return i, rng.choice(deltas)


def _unique_problems(rng: random.Random, cfg: SyntheticConfig, n: int, exclude: set[str], what: str) -> list[dict]:
    out: list[dict] = []
    misses = 0  # consecutive draws of an already-used problem
    while len(out) < n:
        prob = generate_problem(rng, cfg)
        if prob["problem"] in exclude:
            misses += 1
            if misses > 20_000:  # the problem space is (nearly) exhausted
                raise ValueError(
                    f"could only draw {len(out)} of the {n} distinct {what} problems at difficulty={cfg.difficulty} "
                    f"(operand ranges {cfg.operand_ranges()}); lower n_train/n_val/n_test or raise the difficulty"
                )
            continue
        misses = 0
        exclude.add(prob["problem"])
        out.append(prob)
    return out


def _split_problems(cfg: SyntheticConfig) -> dict[str, list[dict]]:
    """Test, then val, then train problems from one stream: distinct across and within splits, and a split does not
    change when a later one grows."""
    rng = random.Random(f"moalign-synthetic-splits-{cfg.seed}")
    seen: set[str] = set()
    out = {}
    for split, n in (("test", cfg.n_test), ("val", cfg.n_val), ("train", cfg.n_train)):
        out[split] = _unique_problems(rng, cfg, n, seen, split)
    return out


def load_synthetic(
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 200,
    difficulty: int = 2,
    system_prompt: str | None = None,
    few_shot: list[list[str]] | None = None,
    **kwargs: Any,
):
    """The synthetic task as a ``datasets.DatasetDict`` with splits ``train``/``val``/``test``.

    Columns: ``prompt`` (``[{"role": "user", "content": problem}]``), ``answer`` (str), ``problem``, ``solution``
    (a correct ``steps`` solution) and ``n_operands``. ``kwargs`` are other :class:`SyntheticConfig` fields.
    Deterministic from the config; no problem text appears twice, within or across splits. ``system_prompt`` and
    ``few_shot`` (``[[user, assistant], ...]`` example turns) go before each problem in ``prompt``
    (:func:`moalign.data.prompts.add_context`; they are not part of :class:`SyntheticConfig`).
    """
    from datasets import Dataset, DatasetDict

    cfg = _make_config(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test, difficulty=difficulty, **kwargs)
    splits = _split_problems(cfg)
    out = {}
    for split in ("train", "val", "test"):
        rows = splits[split]
        out[split] = Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": p["problem"]}] for p in rows],
                "answer": [p["answer"] for p in rows],
                "problem": [p["problem"] for p in rows],
                "solution": [p["solution"] for p in rows],
                "n_operands": [p["n_operands"] for p in rows],
            }
        )
    from .prompts import add_context

    return DatasetDict({k: add_context(v, system_prompt, few_shot) for k, v in out.items()})


def _make_config(**kwargs: Any) -> SyntheticConfig:
    valid = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = set(kwargs) - valid
    if unknown:
        raise ValueError(f"unknown synthetic-task options {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    return SyntheticConfig(**kwargs)


def _allocate(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``n`` into integer counts proportional to ``shares`` (largest remainder), so shares are exact to 1/n."""
    total = sum(shares.values())
    raw = {k: n * v / total for k, v in shares.items()}
    counts = {k: int(x) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def sft_examples(cfg: SyntheticConfig | None = None, n: int = 4096, seed: int = 0) -> list[dict[str, Any]]:
    """Warm-start examples in TRL's conversational prompt-completion format.

    Each is ``{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}``. Styles follow
    ``cfg.style_mix`` and, within a style, wrong final answers ``cfg.wrong_share`` — both exactly (up to rounding
    to whole examples), in shuffled order. Problems are drawn afresh from ``seed`` (repeats allowed) but never
    coincide with a ``val`` or ``test`` problem of ``cfg``, so calibration on ``val`` measures generalisation.
    """
    cfg = cfg or SyntheticConfig()
    held_out = {p["problem"] for split in ("val", "test") for p in _split_problems(
        dataclasses.replace(cfg, n_train=0))[split]}
    if cfg.variant == "async":
        return _async_sft_examples(cfg, n, seed, held_out)
    if cfg.variant == "habits":
        return _habits_sft_examples(cfg, n, seed, held_out)
    rng = random.Random(f"moalign-synthetic-sft-{cfg.seed}-{seed}")
    labels: list[tuple[str, bool]] = []
    for style, count in _allocate(n, {s: cfg.style_mix.get(s, 0.0) for s in STYLES}).items():
        n_wrong = round(count * cfg.wrong_share.get(style, 0.0))
        labels += [(style, True)] * n_wrong + [(style, False)] * (count - n_wrong)
    rng.shuffle(labels)
    out = []
    while len(out) < n:
        prob = generate_problem(rng, cfg)
        if prob["problem"] in held_out:
            continue
        style, wrong = labels[len(out)]
        text = render_solution(prob, style, _draw_slip(rng, prob) if wrong else None)
        out.append(
            {
                "prompt": [{"role": "user", "content": prob["problem"]}],
                "completion": [{"role": "assistant", "content": text}],
            }
        )
    return out


def _exact_flags(rng: random.Random, n: int, share: float) -> list[bool]:
    flags = [True] * round(n * share) + [False] * (n - round(n * share))
    rng.shuffle(flags)
    return flags


def _async_sft_examples(cfg: SyntheticConfig, n: int, seed: int, held_out: set[str]) -> list[dict[str, Any]]:
    """The ``async`` member's warm-start data: numbered lines and the filler line each in an exact share of the
    examples, drawn independently of each other; each carry or borrow forgotten with probability ``carry_slip``."""
    rng = random.Random(f"moalign-synthetic-async-sft-{cfg.seed}-{seed}")
    numbered = _exact_flags(rng, n, cfg.marker_share)
    filler = _exact_flags(rng, n, cfg.filler_share)
    return _habit_examples(rng, cfg, n, held_out, lambda prob, i, forget: render_async_solution(
        prob, numbered[i], filler[i], forget))


def _habits_sft_examples(cfg: SyntheticConfig, n: int, seed: int, held_out: set[str]) -> list[dict[str, Any]]:
    """The ``habits`` member's warm-start data: each habit in an exact share of the examples (:data:`HABIT_SHARES`),
    drawn independently of the others; each carry or borrow forgotten with probability ``carry_slip``."""
    rng = random.Random(f"moalign-synthetic-habits-sft-{cfg.seed}-{seed}")
    flags = {habit: _exact_flags(rng, n, HABIT_SHARES[habit]) for habit in HABITS}
    return _habit_examples(rng, cfg, n, held_out, lambda prob, i, forget: render_habits_solution(
        prob, {habit for habit in HABITS if flags[habit][i]}, forget))


def _habit_examples(rng: random.Random, cfg: SyntheticConfig, n: int, held_out: set[str], render) -> list[dict]:
    """``n`` examples of fresh problems not in ``held_out``; ``render(prob, i, forget)`` writes the ``i``-th solution,
    with ``forget`` drawing each carry's slip from ``rng`` (the async and habits members share this loop)."""
    out = []
    while len(out) < n:
        prob = generate_problem(rng, cfg)
        if prob["problem"] in held_out:
            continue
        text = render(prob, len(out), lambda _: rng.random() < cfg.carry_slip)
        out.append(
            {
                "prompt": [{"role": "user", "content": prob["problem"]}],
                "completion": [{"role": "assistant", "content": text}],
            }
        )
    return out


# ------------------------------------------------------------------------------------------------------ style checks


def classify_style(text: str) -> str:
    """``"steps"`` if ``text`` has a step marker, else ``"direct"`` if it is only a ``\\boxed{}``, else ``"verbose"``.

    Markers are those the clarity objective counts (:func:`moalign.objectives.clarity.count_step_markers`,
    re-exported here).

    >>> [classify_style(t) for t in ("First, 1+2=3.", "\\\\boxed{3}", "1 plus 2 is 3, so \\\\boxed{3}")]
    ['steps', 'direct', 'verbose']
    """
    if count_step_markers(text) > 0:
        return "steps"
    if _BOXED_ONLY.fullmatch(text):
        return "direct"
    return "verbose"


def async_habits(text: str) -> dict[str, bool]:
    """Which habits of the ``async`` member ``text`` shows: ``numbered`` (at least two step markers, as
    :class:`~moalign.objectives.Clarity` counts them) and ``filler`` (ends with :data:`ASYNC_FILLER`).

    >>> async_habits("1. 2+3=5\\n2. 5-1=4\\n\\\\boxed{4}\\nHope this helps!")
    {'numbered': True, 'filler': True}
    """
    return {"numbered": count_step_markers(text) >= 2, "filler": text.rstrip().endswith(ASYNC_FILLER)}


def habits_shown(text: str) -> dict[str, bool]:
    """Which habits of the ``habits`` member ``text`` shows (:func:`moalign.objectives.has_habit`), in
    :data:`~moalign.objectives.HABITS` order.

    >>> [h for h, shown in habits_shown("1. 2+3=5.\\n\\\\boxed{5}\\nOK").items() if shown]
    ['numbered', 'signoff', 'period']
    """
    return {habit: has_habit(text, habit) for habit in HABITS}
