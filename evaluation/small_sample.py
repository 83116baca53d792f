"""Small-sample study: how well metrics rank the models when only a few images per class are scored.

From a cached pool of features (``models.pipeline.extract_to_cache``, e.g. 20 images per class) and
class-name label embeddings, draw ``n_per_class`` images per class (``data.subsample_per_class``,
seeded by the draw index), score every model with every metric on the draw, and judge each metric's
ranking by the weighted Kendall tau (and Kendall tau) against fine-tuned ground truth. Repeated over
``n_draws`` seeds, the result is a long table with one row per (dataset, n_per_class, draw, metric).

A metric that raises ``ValueError`` for some model of a draw (e.g. ``emms_ols`` when D >= N - 1) is
undefined on that draw; a metric whose scores are all equal (at 10 significant digits) ranks nothing:
both are recorded as NaN and counted in ``defined`` by :func:`summarise`.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

import metrics
from data.cache import CacheLayout
from data.splits import subsample_per_class
from metrics import ranking

__all__ = ["STUDY_METRICS", "EMMS_VARIANTS", "study_metrics", "load_pool", "draw_scores", "small_sample_study", "summarise",
           "summary_markdown"]

#: metrics compared by default: registry names, plus the EMMS design variants of :data:`EMMS_VARIANTS`
STUDY_METRICS = ("emms", "emms_lw_zscored", "emms_loo", "emms_gcv", "emms_evidence", "emms_ols", "logme",
                 "logme_flabel", "hscore_reg", "transrate", "sfda", "parc")

#: scores are compared at this many significant digits (as ``evaluation.tables``)
SIGNIFICANT_DIGITS = 10

_EMMS_INPUTS = ("features", "label_embeddings")
#: EMMS designs that are not registry metrics (compared with the registry's ``emms`` in the study)
EMMS_VARIANTS: dict[str, tuple[Callable[..., float], tuple[str, ...]]] = {
    # the registry's emms (Ledoit-Wolf ridge) on z-scored instead of centred features
    "emms_lw_zscored": (partial(metrics.emms, ridge="ledoit_wolf", standardise=True), _EMMS_INPUTS),
    # out-of-sample residuals, ridge minimising them (centred features: better than z-scored here)
    "emms_loo": (partial(metrics.emms_cv, cv="loo", standardise=False), _EMMS_INPUTS),
    "emms_gcv": (partial(metrics.emms_cv, cv="gcv", standardise=False), _EMMS_INPUTS),
}


def study_metrics(names: Sequence[str]) -> dict[str, tuple[Callable[..., float], tuple[str, ...]]]:
    """``{name: (fn, required inputs)}`` from the registry and the study's extra variants (names checked)."""
    out = {}
    for name in names:
        if name in EMMS_VARIANTS:
            out[name] = EMMS_VARIANTS[name]
        else:
            fn = metrics.get_metric(name)                 # KeyError listing the registered names
            if "source_probs" in fn.requires:
                raise ValueError(f"metric {name!r} needs source-head probabilities, which not every model has")
            out[name] = (fn, tuple(fn.requires))
    return out


def load_pool(cache_dir, dataset: str, model_names: Sequence[str], encoder: str = "minilm"):
    """``(features {model: (N, D)}, labels (N,), class embeddings (C, E))`` of a cached pool."""
    layout = CacheLayout(cache_dir)
    labels = layout.load_labels(dataset)
    feats = {m: layout.load_features(dataset, m) for m in model_names}
    emb = layout.load_label_embedding(dataset, encoder)
    bad = [m for m, f in feats.items() if f.shape[0] != labels.shape[0]]
    if bad:
        raise ValueError(f"{dataset}: features of {bad} do not have the {labels.shape[0]} rows of the labels")
    if emb.shape[0] != np.unique(labels).shape[0]:
        raise ValueError(f"{dataset}: {emb.shape[0]} label embeddings for {np.unique(labels).shape[0]} classes")
    return feats, labels, emb


def draw_scores(features: Mapping[str, np.ndarray], labels: np.ndarray, class_embeddings: np.ndarray,
                metric_fns: Mapping[str, tuple[Callable[..., float], tuple[str, ...]]],
                n_per_class: int, draw: int) -> tuple[dict[str, dict[str, float]], int]:
    """Scores ``{metric: {model: score}}`` (NaN where the metric raised ``ValueError``) on the draw
    ``subsample_per_class(labels, n_per_class, random_state=draw)``, and its number of samples."""
    idx = subsample_per_class(labels, n_per_class, random_state=draw)
    y = labels[idx]
    Y = metrics.prepare_label_embeddings(class_embeddings[y][:, :, None])      # (N, E, 1), C distinct rows
    out: dict[str, dict[str, float]] = {name: {} for name in metric_fns}
    for model, X in features.items():
        inputs = {"features": metrics.prepare_features(X[idx]), "labels": y, "label_embeddings": Y}
        for name, (fn, requires) in metric_fns.items():
            try:
                out[name][model] = float(fn(**{k: inputs[k] for k in requires}))
            except ValueError:
                out[name][model] = math.nan
    return out, int(idx.shape[0])


def _rank_measures(scores: Mapping[str, float], truth: Mapping[str, float]) -> dict[str, float]:
    s = {m: float(f"{v:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(v) else v for m, v in scores.items()}
    values = list(s.values())
    distinct = len(set(values)) if all(math.isfinite(v) for v in values) else math.nan
    if not all(math.isfinite(v) for v in values) or len(set(values)) < 2:
        return {"weighted_tau": math.nan, "kendall_tau": math.nan, "rel@1": math.nan, "distinct": distinct}
    g = {m: truth[m] for m in s}
    return {"weighted_tau": ranking.weighted_tau(s, g), "kendall_tau": ranking.kendall_tau(s, g),
            "rel@1": ranking.rel_at_k(s, g, 1), "distinct": distinct}


def small_sample_study(cache_dir, datasets: Sequence[str], model_names: Sequence[str],
                       ground_truth: Mapping[str, Mapping[str, float]], *,
                       metric_names: Sequence[str] = STUDY_METRICS, n_per_class: Sequence[int] = (5, 10),
                       n_draws: int = 20, encoder: str = "minilm", progress: bool = True) -> pd.DataFrame:
    """Long table: dataset, n_per_class, draw, N, metric, weighted_tau, kendall_tau, rel@1, distinct
    (number of distinct scores over the models, at 10 significant digits; NaN if one is undefined)."""
    from tqdm.auto import tqdm

    fns = study_metrics(metric_names)
    missing = [(d, m) for d in datasets for m in model_names if m not in ground_truth.get(d, {})]
    if missing:
        raise ValueError(f"no ground truth for (dataset, model) {missing[:5]}")
    rows = []
    jobs = [(d, n, k) for d in datasets for n in n_per_class for k in range(n_draws)]
    pools = {}
    for d, n, k in tqdm(jobs, desc="draws", disable=not progress):
        if d not in pools:
            pools[d] = load_pool(cache_dir, d, model_names, encoder)
        feats, labels, emb = pools[d]
        scores, N = draw_scores(feats, labels, emb, fns, n, k)
        for name, s in scores.items():
            rows.append(dict(dataset=d, n_per_class=n, draw=k, N=N, metric=name,
                             **_rank_measures(s, ground_truth[d])))
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, measure: str = "weighted_tau") -> pd.DataFrame:
    """Mean, std and number of defined draws of ``measure`` per (metric, n_per_class, dataset), plus an
    ``overall`` pseudo-dataset (the mean over datasets of each draw, i.e. draws are paired)."""
    per = table.groupby(["metric", "n_per_class", "dataset"])[measure].agg(["mean", "std", "count"])
    overall = (table.groupby(["metric", "n_per_class", "draw"])[measure].mean()   # NaN if a dataset is NaN
               .groupby(["metric", "n_per_class"]).agg(["mean", "std", "count"]))
    overall = overall.assign(dataset="overall").set_index("dataset", append=True)
    out = pd.concat([per, overall]).rename(columns={"count": "defined"})
    return out.sort_index()


def summary_markdown(summary: pd.DataFrame, metric_order: Sequence[str], datasets: Sequence[str],
                     n_draws: int, table: pd.DataFrame | None = None) -> str:
    """One markdown table per n_per_class: rows = metrics, columns = datasets + overall, cells mean ± std
    (with ``[k/n_draws]`` when the metric was defined on only k draws); with the long ``table``, a last
    column: the mean number of distinct scores over the models (ties lower it)."""
    lines = []
    cols = list(datasets) + ["overall"]
    distinct = None if table is None else table.groupby(["metric", "n_per_class"])["distinct"].mean()
    for n in sorted(summary.index.get_level_values("n_per_class").unique()):
        lines += [f"**{n} images per class** (weighted Kendall tau vs fine-tuned accuracy, mean ± std over "
                  f"{n_draws} draws)", "",
                  "| metric | " + " | ".join(cols) + (" | distinct scores |" if distinct is not None else " |"),
                  "|---|" + "---|" * (len(cols) + (distinct is not None))]
        for m in metric_order:
            cells = []
            for d in cols:
                try:
                    r = summary.loc[(m, n, d)]
                except KeyError:
                    cells.append("")
                    continue
                if r["defined"] == 0:
                    cells.append("undefined")
                    continue
                cell = f"{r['mean']:+.3f} ± {0.0 if math.isnan(r['std']) else r['std']:.3f}"
                if r["defined"] < n_draws:
                    cell += f" [{int(r['defined'])}/{n_draws}]"
                cells.append(cell)
            if distinct is not None:
                cells.append(f"{distinct.get((m, n), math.nan):.2f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
