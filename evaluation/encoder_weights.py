"""EMMS's simplex weights over K label encoders, and EMMS vs LogME / TransRate on the same F-labels.

For one dataset with features ``X_m`` (N, D_m) of every model m and K class-name encoders, the
per-sample F-labels ``Y`` (N, E, K) are stacked by :class:`evaluation.inputs.DatasetInputs` (mixed
widths: ``Label_embedding.stack_label_embeddings``, a fixed Gaussian projection to the widest E). The
registry ``emms`` (``emms(..., ridge="ledoit_wolf", standardise=False)``) then gives, per model,

    score_m, t_m = emms(X_m, Y, return_weights=True)           t_m in the simplex (K,)

``t_m[k]`` is the weight of encoder k in the regression target ``sum_k t_k Y_k`` (EMMS Eq. 2-4).
:func:`encoder_weight_study` computes t for every (dataset, model), and the scores and the weighted
Kendall tau against a ground truth of ``emms``, ``logme_flabel`` and ``transrate_flabel`` for every
encoder set asked for (each single encoder: K = 1; the full set: K = len(encoders)).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from data.cache import CacheLayout
from metrics import emms, get_metric
from metrics.ranking import weighted_tau

from .inputs import DatasetInputs

__all__ = ["REGISTRY_EMMS_OPTIONS", "FLABEL_METRICS", "emms_encoder_weights", "encoder_weight_study"]

#: the options of the registry ``emms`` (tests check ``emms(**these) == get_metric("emms")``)
REGISTRY_EMMS_OPTIONS = {"ridge": "ledoit_wolf", "standardise": False}

#: metrics compared on the same stacked F-labels
FLABEL_METRICS = ("emms", "logme_flabel", "transrate_flabel")


def emms_encoder_weights(features, label_embeddings) -> Tuple[float, np.ndarray]:
    """``(score, t)``: the registry ``emms`` score and its simplex weights t (K,) over the encoders."""
    out = emms(features, label_embeddings, return_weights=True, **REGISTRY_EMMS_OPTIONS)
    return float(out[0]), np.asarray(out[1], dtype=float)


def _set_name(encoders: Sequence[str]) -> str:
    return "+".join(encoders)


def encoder_weight_study(cache_dir: str | os.PathLike, datasets: Sequence[str], models: Sequence[str], *,
                         encoders: Sequence[str], ground_truth: Optional[Mapping[str, Mapping[str, float]]] = None,
                         encoder_sets: Optional[Sequence[Sequence[str]]] = None, stack_method: str = "project",
                         random_state: int = 0, progress: bool = True,
                         log: Callable[[str], None] = print) -> Dict[str, object]:
    """Weights t of every multi-encoder set and every metric of :data:`FLABEL_METRICS` per encoder set.

    ``encoders`` is the main K-encoder stack (always evaluated); ``encoder_sets`` (lists of registry
    names) default to each single encoder plus ``encoders``. Reads ``features/{dataset}/{model}.npy``, ``labels/{dataset}.npy`` and
    ``label_embeddings/{dataset}/{encoder}.npy`` of the cache (write them first). Returns a JSON-ready dict::

        {"encoders": [...], "sets": ["minilm", ..., "minilm+e5+mpnet"],
         "datasets": {d: {"weights": {set: {model: [t_1..t_K]}},            # sets with K > 1
                          "scores": {set: {metric: {model: score}}},
                          "weighted_tau": {set: {metric: wtau}}}},      # only with ground_truth
         "mean_weights": {d: {set: [..K..]}}, "mean_weighted_tau": {set: {metric: mean over datasets}}}
    """
    encoders = list(encoders)
    if not encoders:
        raise ValueError("give at least one encoder")
    sets = [list(s) for s in (encoder_sets or [[e] for e in encoders] + ([encoders] if len(encoders) > 1 else []))]
    sets = [s for k, s in enumerate(sets) if s not in sets[:k]]
    missing_gt = [(d, m) for d in datasets for m in models
                  if ground_truth is not None and m not in ground_truth.get(d, {})]
    if missing_gt:
        raise ValueError(f"ground truth lacks {missing_gt[:4]}{' ...' if len(missing_gt) > 4 else ''}")
    layout = CacheLayout(cache_dir)
    metric_fns = {name: get_metric(name) for name in FLABEL_METRICS}
    jobs = [(d, m) for d in datasets for m in models]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc="encoder weights", unit="pair")
    names = list(dict.fromkeys([_set_name(s) for s in sets + [encoders]]))
    out: Dict[str, object] = {"encoders": encoders, "sets": names,
                              "stack_method": stack_method, "random_state": int(random_state), "datasets": {}}
    for d in datasets:
        per_set = {_set_name(s): DatasetInputs(layout, d, encoders=s, stack_method=stack_method,
                                               random_state=random_state) for s in sets + [encoders]}
        weights, scores = {}, {name: {metric: {} for metric in FLABEL_METRICS} for name in per_set}
        for m in models:
            for name, inputs in per_set.items():
                X, Y = inputs.features(m), inputs.label_embeddings()
                for metric, fn in metric_fns.items():
                    if metric == "emms":               # the registry emms, with its weights t
                        score, t = emms_encoder_weights(X, Y)
                        if len(t) > 1:
                            weights.setdefault(name, {})[m] = [float(v) for v in t]
                    else:
                        score = fn(features=X, label_embeddings=Y)
                    scores[name][metric][m] = float(score)
            if bar is not None:
                bar.update(1)
        entry: Dict[str, object] = {"weights": weights, "scores": scores}
        if ground_truth is not None:
            gt = {m: float(ground_truth[d][m]) for m in models}
            entry["weighted_tau"] = {name: {metric: float(weighted_tau(s, gt)) for metric, s in by_metric.items()}
                                     for name, by_metric in scores.items()}
        out["datasets"][d] = entry
    if bar is not None:
        bar.close()
    out["mean_weights"] = {d: {name: [float(v) for v in np.mean([w[m] for m in models], axis=0)]
                               for name, w in e["weights"].items()} for d, e in out["datasets"].items()}
    if ground_truth is not None:
        out["mean_weighted_tau"] = {
            name: {metric: float(np.mean([out["datasets"][d]["weighted_tau"][name][metric] for d in datasets]))
                   for metric in FLABEL_METRICS} for name in out["sets"]}
    return out
