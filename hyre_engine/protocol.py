"""The accuracy-vs-n protocol: adapt to each target group with n labels, score the rest.

For every target group and seed, n adaptation rows are drawn (at random, or
chosen one by one with an acquisition strategy under the current weights, or by the
personal model's own scorers under its posterior) and every method of ``METHODS`` is
scored on the group's remaining rows. ``METHODS`` is the one definition of every
evaluated method, the personal ones (personal, residual, probe, user_ceiling) included;
``calibrate_lambda`` (with ``calibrate_prior``, the structured prior's rho) and ``beta_scores`` choose the personal head's prior and HyRe's
temperature with it, on held-out training annotators.
Everything here works on cached arrays (numpy and scipy only, never torch):
the fine-tuning method receives its fine-tuned logits from a callable that the
caller, who holds the model, supplies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from hyre_engine import baselines
from hyre_engine.acquisition import (
    GAUSSIAN_SCORERS,
    PERSONAL_STRATEGIES,
    PREFERENCE_STRATEGIES,
    adaptive_order,
)
from hyre_engine.blas import one_blas_thread
from hyre_engine.numerics import accuracy, finite_logits, sigmoid
from hyre_engine.personal import (
    DEFAULT_CALIBRATION_LAMBDAS,
    DEFAULT_LAMBDA,
    PersonalHead,
    PersonalModel,
    check_diffs,
)
from hyre_engine.personal_prior import DEFAULT_CALIBRATION_RHOS, PersonalPrior, check_rho
from hyre_engine.reweight import (
    DEFAULT_BETA,
    PREFERENCE_LOSSES,
    Posterior,
    effective_heads,
    example_losses,
    weight_entropy,
    weights_from_losses,
)

# The paper's curve: no labels, one, a few, and the n = 10-20 where HyRe saturates.
DEFAULT_N = (0, 1, 5, 10, 20)
# Adaptation draws per group: enough for a standard error of ~1 point on 100-row groups.
DEFAULT_SEEDS = 20
# The heads' strategies, then the personal model's own (they need the embedding differences).
STRATEGIES = (*PREFERENCE_STRATEGIES, *(s for s in PERSONAL_STRATEGIES if s in GAUSSIAN_SCORERS))
LOSSES = PREFERENCE_LOSSES
# The per-group diagnostics that evaluate_group records beside the methods (flip_share:
# the share of unlabelled rows whose side the personal head flips, when diffs are given).
DIAGNOSTICS = ("effective_heads", "weight_entropy", "flip_share")

# finetune(adapt_sets) -> logits (n_sets, n_rows, n_heads): for every set of adaptation rows
# (each non-empty), the heads fine-tuned on those rows, predicting every row of the group.
# One call per group, so the caller can fine-tune every seed and n at once
# (training.finetune_heads_batched); fine-tuning is full-batch, so a seed adds nothing.
Finetune = Callable[[list[np.ndarray]], np.ndarray]
# progress(seeds done, seeds) within one group
GroupProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Fold:
    """One (seed, n) split of a target group, as every method sees it.

    logits: (n_rows, n_heads) float64; p_heads: sigmoid(logits); y: (n_rows,);
    adapt / rest: row indices labelled / scored; weights: HyRe's (n_heads,) after
    the adaptation labels.
    """

    logits: np.ndarray
    p_heads: np.ndarray
    y: np.ndarray
    adapt: np.ndarray
    rest: np.ndarray
    weights: np.ndarray
    seed: int
    single: np.ndarray | None = None
    # (n_rows, n_heads) logits of the heads fine-tuned on ``adapt`` (None: none asked for)
    tuned: np.ndarray | None = None
    # The personal methods: embedding differences (n_rows, dim) and the head's settings.
    diffs: np.ndarray | None = None
    beta: float = DEFAULT_BETA
    lam: float = DEFAULT_LAMBDA
    loss: str = "zero-one"

    @cached_property
    def personal_model(self) -> PersonalModel:
        """HyRe + the personal head after the fold's adaptation labels (built once per fold)."""
        return PersonalModel.fit(self.logits, self.diffs, self.adapt, self.y[self.adapt], beta=self.beta,
                                 lam=self.lam, loss=self.loss)

    def flip_share(self) -> float:
        """Share of the rest rows whose preferred side the personal head flips."""
        model = self.personal_model
        return float(np.mean(np.sign(model.margins()[self.rest]) != np.sign(model.offsets()[self.rest])))


def _uniform(f: Fold) -> float:
    return accuracy(f.p_heads[f.rest].mean(axis=1), f.y[f.rest])


def _hyre(f: Fold) -> float:
    return accuracy(f.p_heads[f.rest] @ f.weights, f.y[f.rest])


def _convex(f: Fold) -> float:
    cw = baselines.fit_convex_weights(f.logits[f.adapt], f.y[f.adapt])
    return accuracy(f.p_heads[f.rest] @ cw, f.y[f.rest])


def _best_head_oracle(f: Fold) -> float:
    return baselines.best_head_oracle(f.logits[f.rest], f.y[f.rest])[1]


def _single(f: Fold) -> float:
    return accuracy(sigmoid(f.single[f.rest]), f.y[f.rest])


def _finetune(f: Fold) -> float:
    # No labels: fine-tuning does nothing, so the untouched heads are its answer.
    tuned = f.tuned if len(f.adapt) else f.logits
    prob = sigmoid(np.asarray(tuned, dtype=np.float64)[f.rest]).mean(axis=1)
    return accuracy(prob, f.y[f.rest])


def _personal(f: Fold) -> float:
    return accuracy(sigmoid(f.personal_model.margins()[f.rest]), f.y[f.rest])


def _residual(f: Fold) -> float:
    model = PersonalModel.fit(f.logits, f.diffs, f.adapt, f.y[f.adapt], beta=f.beta, lam=f.lam,
                              loss=f.loss, reweight=False)
    return accuracy(sigmoid(model.margins()[f.rest]), f.y[f.rest])


def _probe(f: Fold) -> float:
    # A logistic regression on the difference alone, from scratch: no heads, no offset.
    head = PersonalHead.from_labels(f.diffs, f.adapt, f.y[f.adapt], np.zeros(len(f.adapt)), lam=f.lam)
    return accuracy(sigmoid(head.corrections()[f.rest]), f.y[f.rest])


def _user_ceiling(f: Fold) -> float:
    # An upper bound, not a method: fitted on a random half of the group's rows (a new
    # half per seed), scored on the other half; it ignores n.
    n_rows = len(f.y)
    half = np.random.default_rng(10_000 + f.seed).permutation(n_rows)
    fit, test = half[: n_rows // 2], half[n_rows // 2:]
    head = PersonalHead.from_labels(f.diffs, fit, f.y[fit], np.zeros(len(fit)), lam=f.lam)
    return accuracy(sigmoid(head.corrections()[test]), f.y[test])


Method = Callable[[Fold], float]

# Every method the protocol scores, by name: accuracy on the fold's rest rows.
METHODS: dict[str, Method] = {
    "single": _single,
    "uniform": _uniform,
    "hyre": _hyre,
    "convex": _convex,
    "finetune": _finetune,
    "best_head_oracle": _best_head_oracle,
    # HyRe plus the personal head: the personalised model.
    "personal": _personal,
    # The uniform ensemble plus the personal head.
    "residual": _residual,
    "probe": _probe,
    # Upper bound: half-split per-user logistic regression on the embedding difference.
    "user_ceiling": _user_ceiling,
}
ALL_METHODS = tuple(METHODS)
# Methods that need an input beyond the group's head predictions: the Fold field they read.
METHOD_INPUTS = {"single": "single", "finetune": "tuned", "personal": "diffs", "residual": "diffs",
                 "probe": "diffs", "user_ceiling": "diffs"}
# Methods whose score ignores n (a fold's seed decides it): scored once per seed.
SEED_ONLY_METHODS = frozenset({"user_ceiling"})
# The personal head's comparison: the references, HyRe, and every method that reads diffs.
PERSONAL_METHODS = ("uniform", "hyre", *(m for m in METHODS if METHOD_INPUTS.get(m) == "diffs"))


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list; unknown names fail with the valid ones."""
    methods = list(methods)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {', '.join(METHODS)}")
    return methods


@dataclass
class GroupResult:
    n_examples: int
    methods: dict[str, dict[str, list[float]]]
    effective_heads: dict[str, list[float]] = field(default_factory=dict)
    # Shannon entropy (nats) of HyRe's weights at each n: log K when uniform, 0 on one head.
    weight_entropy: dict[str, list[float]] = field(default_factory=dict)
    # Share of unlabelled rows whose side the personal head flips (only with diffs).
    flip_share: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {
            "n_examples": self.n_examples,
            "methods": self.methods,
            "effective_heads": self.effective_heads,
            "weight_entropy": self.weight_entropy,
        }
        if self.flip_share:
            out["flip_share"] = self.flip_share
        return out


def adaptation_order(
    logits: np.ndarray,
    y: np.ndarray,
    n_max: int,
    *,
    strategy: str,
    beta: float,
    loss: str,
    seed: int,
    diffs: np.ndarray | None = None,
    lam: float = DEFAULT_LAMBDA,
) -> np.ndarray:
    """The first ``n_max`` rows a user would label, in order.

    Random draws them uniformly; an active strategy picks each next row by its
    score under the weights after the previous labels (the paper's protocol); a
    personal strategy (``personal_bald``, ``personal_entropy``) by the personal model's
    predictive after them, which needs ``diffs`` (n_rows, dim) and ``lam``.
    """
    n_rows, n_heads = logits.shape
    n_max = min(n_max, n_rows - 1)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if strategy == "random" or n_max <= 0:
        rng = np.random.default_rng(seed)
        return rng.permutation(n_rows)[: max(n_max, 0)]
    if strategy in GAUSSIAN_SCORERS:
        if diffs is None:
            raise ValueError(f"strategy {strategy!r} asks by the personal model: it needs diffs")
        model = PersonalModel(logits, diffs, beta=beta, lam=lam, loss=loss)
        for step in range(n_max):
            item = model.next_item(strategy, seed=seed + step)
            model.add(item, y[item])
        return model.head.rows
    posterior = Posterior(n_heads, beta=beta, loss=loss)
    return adaptive_order(logits, y, n_max, posterior=posterior, strategy=strategy, seed=seed)


def _check_group(logits, y, n_values: Sequence[int], loss: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if logits.ndim != 2 or y.shape != (logits.shape[0],):
        raise ValueError(f"logits (n_rows, n_heads) and y (n_rows,) expected, got {logits.shape} and {y.shape}")
    logits = finite_logits(logits)
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    n_values = [int(n) for n in n_values]
    if min(n_values) < 0:
        raise ValueError(f"n values must be >= 0, got {n_values}")
    if logits.shape[0] < 2:
        raise ValueError(f"a target group needs at least 2 rows, got {logits.shape[0]}")
    return logits, y, n_values


def _check_diffs(diffs, n_rows: int) -> np.ndarray | None:
    if diffs is None:
        return None
    diffs = check_diffs(diffs)
    if diffs.shape[0] != n_rows:
        raise ValueError(f"diffs has {diffs.shape[0]} rows but logits has {n_rows}")
    return diffs


def _folds(logits, y, n_values, seeds: int, *, strategy: str, beta: float, loss: str, diffs, lam: float,
           single) -> list[list[Fold]]:
    """folds[seed][j]: the (seed, n_values[j]) split, its HyRe weights, the methods' inputs."""
    n_rows = logits.shape[0]
    per_example = example_losses(logits, y, loss=loss)
    p_heads = sigmoid(logits)
    folds = []
    for seed in range(seeds):
        order = adaptation_order(logits, y, max(n_values), strategy=strategy, beta=beta, loss=loss, seed=seed,
                                 diffs=diffs, lam=lam)
        folds.append([])
        for n in n_values:
            adapt = order[: min(n, len(order))]
            w = weights_from_losses(per_example[adapt].sum(axis=0), beta=beta)
            folds[-1].append(Fold(logits=logits, p_heads=p_heads, y=y, adapt=adapt,
                                  rest=np.setdiff1d(np.arange(n_rows), adapt), weights=w, seed=seed,
                                  single=single, diffs=diffs, beta=beta, lam=lam, loss=loss))
    return folds


def _fine_tuned(folds: list[list[Fold]], finetune: Finetune) -> list[list[Fold]]:
    """The folds with their fine-tuned heads' logits: one ``finetune`` call for every fold
    that has labels (every seed and n of the group)."""
    labelled = [(s, j) for s, row in enumerate(folds) for j, f in enumerate(row) if len(f.adapt)]
    if not labelled:
        return folds
    tuned = np.asarray(finetune([folds[s][j].adapt for s, j in labelled]))
    expected = (len(labelled), *folds[0][0].logits.shape)
    if tuned.shape != expected:
        raise ValueError(f"finetune returned logits of shape {tuned.shape}, expected {expected}")
    folds = [list(row) for row in folds]
    for (s, j), logits in zip(labelled, tuned, strict=True):
        folds[s][j] = replace(folds[s][j], tuned=logits)
    return folds


def evaluate_group(
    logits: np.ndarray,
    y: np.ndarray,
    *,
    n_values: Sequence[int] = DEFAULT_N,
    seeds: int = DEFAULT_SEEDS,
    strategy: str = "random",
    loss: str = "zero-one",
    beta: float = DEFAULT_BETA,
    single: np.ndarray | None = None,
    finetune: Finetune | None = None,
    diffs: np.ndarray | None = None,
    lam: float = DEFAULT_LAMBDA,
    methods: Sequence[str] = ALL_METHODS,
    progress: GroupProgress | None = None,
    prior: PersonalPrior | None = None,
) -> GroupResult:
    """Accuracy of each method against n on one target group.

    logits: (n_rows, n_heads) head margins on the group's rows; y: (n_rows,) in
    {0, 1}; single: (n_rows,) a one-head model's margins (method ``single``);
    finetune: the fine-tuned heads' logits for all of the group's adaptation sets
    at once (``Finetune``); diffs: (n_rows, dim) embedding differences
    phi(a) - phi(b) (the personal methods, with prior precision ``lam``; ``prior``, a
    structured prior: every method on diffs then runs on D T, ``personal_prior``). Methods
    whose input is not given are left out. ``progress(seeds done, seeds)``.
    """
    logits, y, n_values = _check_group(logits, y, n_values, loss)
    diffs = _check_diffs(diffs, logits.shape[0])
    if diffs is not None and prior is not None:
        diffs = prior.transform(diffs)
    given = {"single": single, "tuned": finetune, "diffs": diffs}
    methods = check_methods(
        [m for m in methods if m not in METHOD_INPUTS or given[METHOD_INPUTS[m]] is not None]
    )
    with one_blas_thread():  # hundreds of small products (blas.py)
        folds = _folds(logits, y, n_values, seeds, strategy=strategy, beta=beta, loss=loss, diffs=diffs, lam=lam,
                       single=single)
    if "finetune" in methods:
        folds = _fine_tuned(folds, finetune)
    acc = {m: np.full((seeds, len(n_values)), np.nan) for m in methods}
    eff, ent, flips = (np.full((seeds, len(n_values)), np.nan) for _ in range(3))
    for seed, row in enumerate(folds):
        with one_blas_thread():
            for j, fold in enumerate(row):
                eff[seed, j] = effective_heads(fold.weights)
                ent[seed, j] = weight_entropy(fold.weights)
                if diffs is not None:
                    flips[seed, j] = fold.flip_share()
                for m in methods:
                    acc[m][seed, j] = acc[m][seed, 0] if j and m in SEED_ONLY_METHODS else METHODS[m](fold)
        if progress is not None:
            progress(seed + 1, seeds)
    return GroupResult(
        n_examples=logits.shape[0],
        methods={m: _stats(a, nan=True) for m, a in acc.items()},
        effective_heads=_stats(eff),
        weight_entropy=_stats(ent),
        flip_share=_stats(flips) if diffs is not None else {},
    )


def summarise(n_values: Sequence[int], groups: dict[str, GroupResult]) -> dict:
    """The JSON contract: per-group results plus the mean over groups of each group's mean."""
    methods = sorted({m for g in groups.values() for m in g.methods})
    summary = {}
    for m in methods:
        means = np.array([g.methods[m]["mean"] for g in groups.values() if m in g.methods])
        summary[m] = {"mean": _round(means.mean(axis=0)), "std_over_groups": _round(means.std(axis=0))}
    return {
        "n": list(n_values),
        "groups": {name: g.to_json() for name, g in groups.items()},
        "summary": summary,
    }


def format_table(result: dict, *, title: str = "") -> str:
    """A readable table of the summary: one row per method, one column per n."""
    n_values = result["n"]
    lines = [title] if title else []
    header = f"{'method':<18}" + "".join(f"{'n=' + str(n):>9}" for n in n_values)
    lines += [header, "-" * len(header)]
    for method, stats in result["summary"].items():
        lines.append(f"{method:<18}" + "".join(f"{v:>9.3f}" for v in stats["mean"]))
    labels = ("(effective heads)", "(weight entropy)", "(personal flips)")
    for key, label, fmt in zip(DIAGNOSTICS, labels, (".1f", ".2f", ".3f"), strict=True):
        mean_row = diagnostic_means(result, key)
        if mean_row is not None:
            lines.append(f"{label:<18}" + "".join(f"{v:>9{fmt}}" for v in mean_row))
    return "\n".join(lines)


def diagnostic_means(result: dict, key: str) -> list[float] | None:
    """Per n, the mean over groups of each group's mean ``key`` (e.g. effective heads).

    ``result`` is the JSON contract of ``summarise`` (a stored result too, so it is
    computed from the groups rather than stored in the summary). Groups without the
    diagnostic are skipped; None when no group has it.
    """
    if key not in DIAGNOSTICS:
        raise ValueError(f"unknown diagnostic {key!r}; choose from {list(DIAGNOSTICS)}")
    rows = [g[key]["mean"] for g in result["groups"].values() if g.get(key)]
    if not rows:
        return None
    n_values = len(result["n"])
    if any(len(r) != n_values for r in rows):
        raise ValueError(f"{key} needs one mean per value of n ({n_values}), got lengths {[len(r) for r in rows]}")
    return _round(np.mean(np.array(rows, dtype=float), axis=0))


def _stats(a: np.ndarray, *, nan: bool = False) -> dict[str, list[float]]:
    """{"mean", "std"} over seeds (axis 0); ``nan`` skips NaN entries."""
    mean, std = (np.nanmean, np.nanstd) if nan else (np.mean, np.std)
    return {"mean": _round(mean(a, axis=0)), "std": _round(std(a, axis=0))}


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def beta_scores(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    betas: Sequence[float],
    *,
    n_values: Sequence[int],
    seeds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """What calibrating beta compares: HyRe's accuracy under each candidate beta.

    groups: (logits (n_rows, n_heads), y (n_rows,)) per held-out annotator. Returns
    (scores (n_groups, n_betas): HyRe's accuracy averaged over ``n_values`` after
    random adaptation draws, uniform (n_groups,): the uniform ensemble's).
    """
    scores = np.zeros((len(groups), len(betas)))
    uniform = np.zeros(len(groups))
    for i, (logits, y) in enumerate(groups):
        for j, beta in enumerate(betas):
            result = evaluate_group(logits, y, n_values=n_values, seeds=seeds,
                                    methods=["uniform", "hyre"], beta=beta)
            scores[i, j] = float(np.mean(result.methods["hyre"]["mean"]))
            uniform[i] = float(np.mean(result.methods["uniform"]["mean"]))
    return scores, uniform


def calibrate_lambda(groups, *, beta: float, lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
                     n_values: Sequence[int] = (5, 10), seeds: int = 5) -> dict:
    """Choose lambda by the personal model's accuracy on held-out *training* annotators.

    ``groups``: iterable of (logits (n, K), diffs (n, dim), y (n,)) of each held-out
    annotator, predicted by an ensemble that never trained on them. Returns a JSON-safe
    dict: the chosen ``lam`` (ties: the larger, i.e. the more cautious, lambda) and the
    mean accuracy per candidate.
    """
    lambdas = sorted({float(v) for v in lambdas})
    if not lambdas or min(lambdas) <= 0:
        raise ValueError(f"calibration lambdas must be positive, got {lambdas}")
    groups = list(groups)
    if not groups:
        raise ValueError("lambda calibration needs at least one held-out annotator")
    scores = np.zeros((len(groups), len(lambdas)))
    for i, (logits, diffs, y) in enumerate(groups):
        for j, lam in enumerate(lambdas):
            r = evaluate_group(logits, y, diffs=diffs, n_values=n_values, seeds=seeds, beta=beta, lam=lam,
                               methods=["personal"])
            scores[i, j] = float(np.mean(r.methods["personal"]["mean"]))
    mean = scores.mean(axis=0)
    best = int(np.flatnonzero(mean >= mean.max() - 1e-12)[-1])
    return {
        "lam": lambdas[best],
        "lambdas": lambdas,
        "scores": {f"{v:g}": round(float(s), 6) for v, s in zip(lambdas, mean, strict=True)},
        "n": [int(n) for n in n_values],
        "seeds": int(seeds),
        "beta": float(beta),
    }


def calibrate_prior(groups, *, beta: float, basis: tuple[np.ndarray, np.ndarray] | None,
                    rhos: Sequence[float] = DEFAULT_CALIBRATION_RHOS,
                    lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
                    n_values: Sequence[int] = (5, 10), seeds: int = 5) -> dict:
    """Choose the structured prior's rho together with lambda on held-out *training* annotators.

    ``groups`` as for ``calibrate_lambda``; ``basis`` (U, e) from the *other* training
    annotators (``personal_prior.annotator_basis``), never the held-out ones nor a target;
    None (no basis could be built) calibrates the isotropic head only. For each rho, lambda
    is calibrated on the groups' D T; the rho whose best lambda scores highest wins (ties:
    the smaller rho, i.e. the isotropic head at a tie). Returns a JSON-safe dict: ``lam``,
    ``rho``, ``by_rho`` (each rho's ``calibrate_lambda`` result) and ``scores`` (the chosen
    rho's scores per lambda).
    """
    rhos = sorted({check_rho(r) for r in rhos})
    if not rhos or rhos[0] != 0.0:
        rhos = [0.0, *rhos]  # the isotropic head is always a candidate
    groups = [(z, check_diffs(d), y) for z, d, y in groups]
    if basis is None:
        rhos = [0.0]
    by_rho: dict[str, dict] = {}
    best_rho, best_score = 0.0, -np.inf
    for rho in rhos:
        prior = None if rho == 0.0 else PersonalPrior(basis[0], basis[1], rho)
        result = calibrate_lambda([(z, d if prior is None else prior.transform(d), y) for z, d, y in groups],
                                  beta=beta, lambdas=lambdas, n_values=n_values, seeds=seeds)
        by_rho[f"{rho:g}"] = result
        score = max(result["scores"].values())
        if score > best_score + 1e-12:  # rhos ascend: a tie keeps the smaller
            best_rho, best_score = rho, score
    chosen = by_rho[f"{best_rho:g}"]
    return {"lam": chosen["lam"], "rho": best_rho, "scores": chosen["scores"], "by_rho": by_rho,
            "rhos": rhos, "prior_rank": 0 if basis is None else int(np.asarray(basis[1]).size)}
