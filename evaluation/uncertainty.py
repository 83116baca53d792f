"""Confidence intervals for rank measures: a bootstrap over ground-truth seed noise and model subsets.

A metric's weighted tau on a handful of models is a noisy number: it moves when one pair of models
swaps, and the fine-tuned accuracies it is judged against carry seed noise of their own. Agostinelli
et al. ("How stable are transferability metrics evaluations?", ECCV 2022) show that conclusions drawn
from one fixed setup often flip under small changes of it, and recommend reporting over many
perturbed setups. Each bootstrap replicate b here perturbs the setup of every dataset d twice:

* **ground-truth noise**: model m's fine-tuned value is replaced by the mean of ``n_m`` draws with
  replacement from its per-seed accuracies ``a_m1 .. a_mn`` (a model with a single value keeps it);
* **model subset**: the measure is computed on a random subset of ``ceil(subset_fraction * M_d)``
  of the dataset's ``M_d`` models (at least 3, drawn without replacement: a resample with
  replacement would duplicate models and tie their ground truth).

The replicate's value of a metric is the mean over datasets of the measure (datasets where it is
undefined, e.g. constant scores on the subset, are left out of that mean). Every metric sees the same
perturbed setups, so differences between metrics are paired: metric a is *significantly* better than
b when the ``confidence`` percentile interval of ``mean_a - mean_b`` over the replicates lies above 0
(over the datasets both metrics scored; when one of them skips models, e.g. LEEP without a source
head, both are judged on the models both scored, so the comparison stays on one ranking problem).
Point values are the unperturbed means; intervals are percentile intervals. Deterministic for a given ``random_state``.

How well the ground truth itself can order the models is reported next to it
(:func:`ground_truth_resolution`, ``BootstrapResult.resolution``): per dataset the share of model
pairs whose mean accuracies differ significantly given their seed noise (Welch's t-test, two-sided
5 %). A dataset where most pairs are within noise (e.g. every model at 97-100 %) cannot reward a
metric for ordering them, whatever its weighted tau says.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from .runner import DatasetResult
from .tables import MIN_RANKED_MODELS, _comparable

__all__ = ["MEASURES", "BootstrapResult", "bootstrap_rank_measures", "format_interval_table",
           "ground_truth_resolution"]


def _weighted_tau(s: np.ndarray, g: np.ndarray) -> float:
    return float(scipy.stats.weightedtau(s, g).statistic)


def _kendall_tau(s: np.ndarray, g: np.ndarray) -> float:
    return float(scipy.stats.kendalltau(s, g).statistic)


def _pearson(s: np.ndarray, g: np.ndarray) -> float:
    return float(scipy.stats.pearsonr(s, g).statistic)


#: rank measures the bootstrap can resample (array versions of :mod:`metrics.ranking`'s functions)
MEASURES = {"weighted_tau": _weighted_tau, "kendall_tau": _kendall_tau, "pearson": _pearson}


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of :func:`bootstrap_rank_measures`.

    ``summary``: per metric ``point`` (mean measure over datasets, unperturbed), ``ci_low``, ``ci_high``,
    ``boot_mean``, ``n_datasets``, and ``n_scored`` / ``n_models``: the (dataset, model) cells the
    metric scored out of all (a metric is judged on the models it scored, at least
    :data:`evaluation.tables.MIN_RANKED_MODELS` per dataset). ``per_dataset``: per (metric, dataset) the same columns (no
    ``n_datasets``). ``difference_low`` / ``difference_high``: metric x metric interval of
    ``mean_row - mean_col``. ``significant``: metric x metric, True where row is significantly better
    than column (never, when the replicates cannot vary: ``informative`` False, i.e. no seed noise and
    every dataset too small to drop a model). ``replicates``: n_boot x metric array of replicate means (columns = ``metrics``).
    ``resolution``: :func:`ground_truth_resolution` of the same ground truth and seeds.
    """

    measure: str
    metrics: List[str]
    summary: pd.DataFrame
    per_dataset: pd.DataFrame
    difference_low: pd.DataFrame
    difference_high: pd.DataFrame
    significant: pd.DataFrame
    replicates: np.ndarray
    n_boot: int
    confidence: float
    subset_fraction: float
    seed_noise: bool
    informative: bool = True
    resolution: Optional[pd.DataFrame] = None

    def better_than(self, metric: str) -> List[str]:
        """The metrics ``metric`` is significantly better than."""
        row = self.significant.loc[metric]
        return [m for m in self.metrics if bool(row[m])]


def _check_inputs(results, measure, n_boot, confidence, subset_fraction) -> None:
    if not results:
        raise ValueError("bootstrap_rank_measures needs at least one dataset result")
    if any(not isinstance(r, DatasetResult) for r in results):
        raise TypeError("results must be evaluation.DatasetResult objects")
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; available: {sorted(MEASURES)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10, got {n_boot!r}")
    if not (isinstance(confidence, float) and 0.5 <= confidence < 1):
        raise ValueError(f"confidence must be a float in [0.5, 1), got {confidence!r}")
    if not (isinstance(subset_fraction, (int, float)) and 0 < subset_fraction <= 1):
        raise ValueError(f"subset_fraction must be in (0, 1], got {subset_fraction!r}")


def _seed_table(result: DatasetResult, seeds: Optional[Mapping[str, Mapping[str, Sequence[float]]]]
                ) -> List[np.ndarray]:
    """Per model of ``result`` (in order) its per-seed ground-truth values (one value if unknown)."""
    per_model = (seeds or {}).get(result.dataset, {})
    out = []
    for m in result.models:
        values = per_model.get(m)
        if values is None:
            out.append(np.array([result.ground_truth[m]], dtype=np.float64))
            continue
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"seed values of {m} on {result.dataset} must be a non-empty list of finite numbers")
        if not math.isclose(arr.mean(), result.ground_truth[m], rel_tol=1e-6, abs_tol=1e-6):
            raise ValueError(f"seed values of {m} on {result.dataset} average {arr.mean():.6g}, but the ground "
                             f"truth says {result.ground_truth[m]:.6g}: they come from different tables")
        out.append(arr)
    return out


def _measure(fn, s: np.ndarray, g: np.ndarray) -> float:
    if s.size < MIN_RANKED_MODELS or np.ptp(s) == 0 or np.ptp(g) == 0:
        return np.nan
    return fn(s, g)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return np.nan, np.nan
    alpha = (1 - confidence) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def _resolution_row(values: Sequence[np.ndarray], alpha: float) -> dict:
    means = np.array([v.mean() for v in values])
    seeded = [v.size >= 2 for v in values]
    stds = np.array([v.std(ddof=1) if v.size >= 2 else np.nan for v in values])
    n_pairs = separated = tested = 0
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            n_pairs += 1
            if not (seeded[i] and seeded[j]):
                continue
            tested += 1
            if stds[i] == 0 and stds[j] == 0:          # both exact: any difference is real
                separated += int(means[i] != means[j])
                continue
            p = scipy.stats.ttest_ind_from_stats(means[i], stds[i], values[i].size, means[j], stds[j],
                                                 values[j].size, equal_var=False).pvalue
            separated += int(bool(p < alpha))
    return {"n_models": len(values), "n_pairs": n_pairs, "accuracy_range": float(np.ptp(means)) if len(means) else np.nan,
            "median_seed_std": float(np.nanmedian(stds)) if np.isfinite(stds).any() else np.nan,
            "pairs_tested": tested, "separated_pairs": separated / tested if tested else np.nan}


def ground_truth_resolution(results: Sequence[DatasetResult], *,
                            seeds: Optional[Mapping[str, Mapping[str, Sequence[float]]]] = None,
                            alpha: float = 0.05) -> pd.DataFrame:
    """Per dataset: how many of its model pairs the ground truth orders beyond its seed noise.

    For models i, j with per-seed accuracies (``seeds``, at least 2 each) the pair is *separated*
    when Welch's t-test of their means rejects equality at ``alpha`` (two-sided; two models whose
    seeds are all identical are separated when their values differ). Columns: ``n_models``,
    ``n_pairs``, ``accuracy_range`` (max - min of the means), ``median_seed_std``, ``pairs_tested``
    (pairs with seeds on both sides) and ``separated_pairs`` (their share; NaN without seeds).
    With 3 seeds per model the test is conservative: a pair needs a gap of several seed standard
    deviations."""
    results = list(results)
    if not results or any(r.ground_truth is None for r in results):
        raise ValueError("ground_truth_resolution needs dataset results with ground truth")
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    rows = {r.dataset: _resolution_row(_seed_table(r, seeds), alpha) for r in results}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("dataset")


def bootstrap_rank_measures(results: Sequence[DatasetResult], *,
                            seeds: Optional[Mapping[str, Mapping[str, Sequence[float]]]] = None,
                            measure: str = "weighted_tau", n_boot: int = 1000, confidence: float = 0.95,
                            subset_fraction: float = 0.75, random_state: int = 0) -> BootstrapResult:
    """Bootstrap intervals of ``measure`` (mean over datasets) for every metric; see the module doc.

    ``results``: dataset results with ground truth. ``seeds``: ``{dataset: {model: [per-seed
    values]}}`` whose means equal the ground truth (e.g. from the fine-tuned table's
    ``test_acc_seeds``); ``None`` or missing entries: no seed noise for those models.
    """
    results = list(results)
    _check_inputs(results, measure, n_boot, confidence, subset_fraction)
    missing = [r.dataset for r in results if r.ground_truth is None]
    if missing:
        raise ValueError(f"no ground truth for {missing}: a bootstrap of rank measures needs it")
    fn = MEASURES[measure]
    metrics: List[str] = []
    for r in results:
        metrics += [m for m in r.metrics if m not in metrics]
    rng = np.random.default_rng(random_state)
    n_metrics = len(metrics)
    # per dataset: score matrix (metric x model, NaN = not scored), per-model seed values
    prepared = []
    for r in results:
        S = np.full((n_metrics, len(r.models)), np.nan)
        for i, metric in enumerate(metrics):
            comparable = _comparable(r.scores.get(metric, {}))
            for j, m in enumerate(r.models):
                v = comparable.get(m, np.nan)
                S[i, j] = v if math.isfinite(v) else np.nan
        prepared.append((r, S, _seed_table(r, seeds)))
    seed_noise = any(v.size > 1 for _, _, sv in prepared for v in sv)

    def evaluate(S, g, subset):
        out = np.full(n_metrics, np.nan)
        for i in range(n_metrics):
            row = S[i, subset]
            ok = np.isfinite(row)
            # a metric that did not score every model of the subset is judged on those it scored
            out[i] = _measure(fn, row[ok], g[subset][ok])
        return out

    varies = seed_noise
    setups = []                                # per dataset: (replicate ground truths, model subsets)
    point = np.full((len(prepared), n_metrics), np.nan)
    boot = np.full((n_boot, len(prepared), n_metrics), np.nan)
    for d, (r, S, seed_values) in enumerate(prepared):
        g0 = np.array([r.ground_truth[m] for m in r.models], dtype=np.float64)
        everyone = np.arange(len(r.models))
        point[d] = evaluate(S, g0, everyone)
        M = len(r.models)
        k = min(M, max(3, math.ceil(subset_fraction * M)))
        varies = varies or k < M
        G = np.empty((n_boot, M))              # replicate ground truths: bootstrap means of the seeds
        for j, v in enumerate(seed_values):
            G[:, j] = v[0] if v.size == 1 else v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
        subsets = np.empty((n_boot, k), dtype=np.int64)
        for b in range(n_boot):
            subsets[b] = np.sort(rng.permutation(M)[:k])
            boot[b, d] = evaluate(S, G[b], subsets[b])
        setups.append((G, subsets))

    defined = np.isfinite(point)               # (dataset, metric): the measure exists on full data
    with np.errstate(invalid="ignore"):
        masked = np.where(defined[None], boot, np.nan)
        replicate_means = _nanmean(masked, axis=1)          # (n_boot, metric)
    rows, per_rows = [], []
    for i, metric in enumerate(metrics):
        lo, hi = _interval(replicate_means[:, i], confidence)
        scored = [int(np.isfinite(S[i]).sum()) for _, S, _ in prepared]
        rows.append({"point": _nanmean(point[:, i][defined[:, i]]), "ci_low": lo, "ci_high": hi,
                     "boot_mean": _nanmean(replicate_means[:, i]), "n_datasets": int(defined[:, i].sum()),
                     "n_scored": int(sum(scored)), "n_models": int(sum(S.shape[1] for _, S, _ in prepared))})
        for d, (r, _, _) in enumerate(prepared):
            lo_d, hi_d = _interval(boot[:, d, i], confidence)
            per_rows.append({"metric": metric, "dataset": r.dataset, "point": point[d, i], "ci_low": lo_d,
                             "ci_high": hi_d, "boot_mean": _nanmean(boot[:, d, i])})
    summary = pd.DataFrame(rows, index=pd.Index(metrics, name="metric"))
    per_dataset = pd.DataFrame(per_rows).set_index(["metric", "dataset"])
    low = pd.DataFrame(np.nan, index=pd.Index(metrics, name="metric"), columns=metrics)
    high = low.copy()
    significant = pd.DataFrame(False, index=low.index, columns=metrics)
    scored_masks = [[np.isfinite(S[i]).tobytes() for i in range(n_metrics)] for _, S, _ in prepared]

    judged: Dict[tuple, tuple] = {}

    def judged_on(i: int, masks: tuple):
        """(point, replicates) of metric i judged on the models of ``masks`` (per dataset, a boolean
        array), memoised: every metric paired with e.g. LEEP is judged on LEEP's models once."""
        key = (i, tuple(m.tobytes() for m in masks))
        if key not in judged:
            pt = np.full(len(prepared), np.nan)
            reps = np.full((n_boot, len(prepared)), np.nan)
            for d, ((r, S, _), (G, subsets), mask) in enumerate(zip(prepared, setups, masks)):
                g0 = np.array([r.ground_truth[m] for m in r.models], dtype=np.float64)
                pt[d] = _measure(fn, S[i][mask], g0[mask])
                for b in range(n_boot):
                    sub = subsets[b][mask[subsets[b]]]
                    reps[b, d] = _measure(fn, S[i][sub], G[b][sub])
            judged[key] = pt, reps
        return judged[key]

    def on_common_models(i: int, j: int):
        """Metrics i and j each judged on the models BOTH scored: a paired comparison on one ranking
        problem (a metric that skips models would otherwise be judged on an easier one)."""
        masks = tuple(np.isfinite(S[i]) & np.isfinite(S[j]) for _, S, _ in prepared)
        (pi, ri), (pj, rj) = judged_on(i, masks), judged_on(j, masks)
        return np.stack([pi, pj], axis=1), np.stack([ri, rj], axis=2)

    for i, a in enumerate(metrics):
        for j, b in enumerate(metrics):
            if i == j:
                continue
            if all(masks[i] == masks[j] for masks in scored_masks):
                both = defined[:, i] & defined[:, j]
                rep_i, rep_j = boot[:, :, i], boot[:, :, j]
            else:
                pt, reps = on_common_models(i, j)
                both = np.isfinite(pt[:, 0]) & np.isfinite(pt[:, 1])
                rep_i, rep_j = reps[:, :, 0], reps[:, :, 1]
            if not both.any():
                continue
            diff = _nanmean(rep_i[:, both], axis=1) - _nanmean(rep_j[:, both], axis=1)
            lo, hi = _interval(diff, confidence)
            low.loc[a, b], high.loc[a, b] = lo, hi
            significant.loc[a, b] = bool(varies and lo > 0)
    return BootstrapResult(measure=measure, metrics=metrics, summary=summary, per_dataset=per_dataset,
                           difference_low=low, difference_high=high, significant=significant,
                           replicates=replicate_means, n_boot=int(n_boot), confidence=confidence,
                           subset_fraction=float(subset_fraction), seed_noise=seed_noise, informative=varies,
                           resolution=ground_truth_resolution(results, seeds=seeds))


def _nanmean(a, axis=None):
    """``np.nanmean`` without the all-NaN warning (NaN where nothing is finite)."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    count = finite.sum(axis=axis)
    total = np.where(finite, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return float(out) if np.ndim(out) == 0 else out


def format_interval_table(result: BootstrapResult, *, digits: int = 2) -> pd.DataFrame:
    """Display table: per metric ``point [ci_low, ci_high]``, the (dataset, model) cells it scored
    out of all, and the metrics it significantly beats. Metrics that scored every cell come first,
    by point value (best first); then those judged on fewer models (not comparable: a subset of the
    models is an easier ranking problem), also by point value."""
    rows = []
    summary = result.summary.assign(_partial=result.summary["n_scored"] < result.summary["n_models"])
    for metric, row in summary.sort_values(["_partial", "point"], ascending=[True, False]).iterrows():
        if not math.isfinite(row["point"]):
            text = "—"
        else:
            text = f"{row['point']:.{digits}f} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
        rows.append({"metric": metric, f"mean {result.measure} [{int(result.confidence * 100)}% CI]": text,
                     "models scored": f"{int(row['n_scored'])}/{int(row['n_models'])}",
                     "significantly better than": ", ".join(result.better_than(metric)) or "—"})
    return pd.DataFrame(rows).set_index("metric")
