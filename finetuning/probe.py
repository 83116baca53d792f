"""A second, cheap yardstick on the metrics' own features: the linear-probe accuracy.

For each (model, dataset): the protocol's training images (:func:`finetuning.protocol.train_subset`)
and test images go through the protocol's pipeline (:func:`finetuning.protocol.protocol_extract`),
the features are standardised with the training mean / std, and an L2-regularised multinomial
logistic regression is fitted on the training features::

    min_W,b  sum_i CE(softmax(W z_i + b), y_i) + ||W||^2 / (2 C)

with ``C`` chosen by ``folds``-fold stratified cross-validation (accuracy) over the grid ``cs``
(sklearn ``LogisticRegressionCV``, lbfgs), then refitted on all training features. The probe
accuracy is the percent of the protocol's test images it classifies correctly. Its Kendall tau
against the fine-tuned table, per dataset, says how far the two yardsticks agree.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .config import FinetuneConfig

__all__ = ["PROBE_CS", "PROBE_FOLDS", "PROBE_GROUP", "probe_accuracy", "rank_agreement", "run_probe"]

#: grid of the inverse L2 strength C (decades), and the cross-validation folds
PROBE_CS = tuple(float(c) for c in np.logspace(-4, 3, 8))
PROBE_FOLDS = 5
#: group name of the probe table (data/ground_truth/offline_probe.json)
PROBE_GROUP = "offline_probe"


def _check_xy(x, y, what: str):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{what}: expected features (N, D) and labels (N,), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: features contain non-finite values")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers, got {y.dtype}")
    return x, y


def probe_accuracy(x_train, y_train, x_test, y_test, *, cs: Sequence[float] = PROBE_CS,
                   folds: int = PROBE_FOLDS, random_state: int = 0, max_iter: int = 2000) -> dict:
    """Linear-probe test accuracy (module docstring). Inputs are not modified.

    Returns ``{"test_acc": percent, "C": chosen C, "cv_acc": percent (mean CV accuracy at C),
    "c_bracketed": C strictly inside the grid, "folds", "cs"}``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = _check_xy(x_train, y_train, "probe training set")
    x_test, y_test = _check_xy(x_test, y_test, "probe test set")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train and test features differ in width: {x_train.shape[1]} vs {x_test.shape[1]}")
    counts = np.unique(y_train, return_counts=True)[1]
    if counts.size < 2 or counts.min() < folds:
        raise ValueError(f"a {folds}-fold probe needs >= 2 classes with >= {folds} training samples each, "
                         f"got class sizes {counts.tolist()}")
    cs = sorted(float(c) for c in cs)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegressionCV(Cs=cs, cv=StratifiedKFold(folds, shuffle=True, random_state=random_state),
                               scoring="accuracy", max_iter=max_iter, l1_ratios=(0.0,),
                               use_legacy_attributes=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x_train), y_train)
    c = float(clf.C_)
    per_c = np.asarray(clf.scores_, dtype=np.float64).mean(axis=(0, 1))       # (folds, 1, len(cs)) -> (len(cs),)
    cv_acc = float(100.0 * per_c[int(np.argmin(np.abs(np.log(cs) - np.log(c))))])
    pred = clf.predict(scaler.transform(x_test))
    return {"test_acc": float(100.0 * np.mean(pred == y_test)), "C": c, "cv_acc": cv_acc,
            "c_bracketed": bool(cs[0] < c < cs[-1]), "folds": int(folds), "cs": cs}


def rank_agreement(a: Mapping[str, float], b: Mapping[str, float]) -> Optional[float]:
    """Kendall tau-b of two ``{model: value}`` rows over their common models; ``None`` with fewer
    than 3 common models or a constant row (no ranking to compare)."""
    from scipy.stats import kendalltau

    common = sorted(set(a) & set(b))
    if len(common) < 3:
        return None
    x, y = np.array([a[m] for m in common]), np.array([b[m] for m in common])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(kendalltau(x, y).statistic)


def run_probe(model_names: Sequence[str], dataset_names: Sequence[str], config: FinetuneConfig,
              cache_dir: str | os.PathLike, output_path: str | os.PathLike, *,
              references: Optional[Mapping[str, Mapping[str, Mapping[str, float]]]] = None,
              cs: Sequence[float] = PROBE_CS, folds: int = PROBE_FOLDS, progress: bool = True,
              **extract_kw) -> dict:
    """Probe every (model, dataset) pair that is not excluded and write the ``offline_probe`` table.

    Features are extracted (or reused) under ``cache_dir/train`` and ``cache_dir/test`` with
    :func:`finetuning.protocol.protocol_extract`. ``references`` (``{name: {dataset: {model:
    accuracy}}}``, e.g. the fine-tuned tables) adds the per-dataset Kendall tau against each under
    ``"agreement": {dataset: {name: {"kendall_tau", "models"}}}`` (``None``: < 3 common models).
    The file (schema of :mod:`data.ground_truth`) is written atomically and returned.
    """
    from data.cache import CacheLayout, atomic_save_json, load_npy
    from data.ground_truth import validate_ground_truth_table

    from .protocol import excluded, protocol_extract

    cache_dir = Path(cache_dir)
    for split in ("train", "test"):
        protocol_extract(model_names, dataset_names, config, cache_dir / split, split=split, progress=progress,
                         **extract_kw)
    train, test = CacheLayout(cache_dir / "train"), CacheLayout(cache_dir / "test")
    table: dict = {}
    runs: dict = {}
    for d in dataset_names:
        y_tr, y_te = train.load_labels(d), test.load_labels(d)
        for m in model_names:
            if excluded(m, d):
                continue
            t0 = time.perf_counter()
            rec = probe_accuracy(load_npy(train.features(d, m)), y_tr, load_npy(test.features(d, m)), y_te,
                                 cs=cs, folds=folds, random_state=config.seed)
            rec.update(n_train=int(y_tr.size), n_test=int(y_te.size), seconds=round(time.perf_counter() - t0, 2))
            table.setdefault(d, {})[m] = rec["test_acc"]
            runs.setdefault(d, {})[m] = rec
            if progress:
                print(f"[probe] {m} on {d}: {rec['test_acc']:.1f} % (C={rec['C']:g}, {rec['seconds']:.1f} s)")
    validate_ground_truth_table(table, where=f"{PROBE_GROUP} table")
    agreement: dict = {}
    for name, ref in (references or {}).items():
        for d, row in table.items():
            other = ref.get(d, {})
            agreement.setdefault(d, {})[name] = {"kendall_tau": rank_agreement(row, other),
                                                 "models": sorted(set(row) & set(other))}
    doc = {"about": ("Linear-probe test accuracies (percent) on the metrics' own features: the protocol's "
                     "training images and pipeline (finetuning.protocol), standardised features, L2 logistic "
                     f"regression with C picked by {folds}-fold stratified CV; see finetuning/probe.py."),
           "group": PROBE_GROUP, "source": "measured here by linear_probe.py (finetuning.probe)",
           "unit": "percent", "dataset_measure": {d: "accuracy" for d in table},
           "protocol": {**config.to_dict(), "probe_cs": list(map(float, sorted(cs))), "probe_folds": int(folds)},
           PROBE_GROUP: table, "agreement": agreement, "runs": runs}
    atomic_save_json(output_path, doc)
    return doc
