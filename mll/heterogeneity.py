"""How heterogeneous a hub is on a set of target tasks, and the per-class oracle (docs/mll.md,
"The heterogeneous offline hub").

From the measured per-class recall ``R[c, m]`` (C, M) of every model on every class of a target:

* distinct best models: ``|{argmax_m R[c, m] : c}|`` (ties broken towards the first model);
* mean per-class spread: ``mean_c (max_m R[c, m] - min_m R[c, m])``;
* per-class max recall: ``mean_c max_m R[c, m]`` (an upper bound, ignores how the models are combined);
* per-class oracle: per class the model with the best recall, reused exactly as MLL reuses its k=1
  choice (the benchmark's ensemble), so it is the accuracy of a perfect k=1 selector;
* best single model: ``max_m`` accuracy; gap = per-class oracle - best single model.

If the per-class oracle is not clearly above the best single model, no per-class selector (MLL)
can beat a per-task selector (INB, ModelGPT) on that hub.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["per_class_oracle_models", "heterogeneity_table"]


def per_class_oracle_models(per_class_recall: np.ndarray) -> np.ndarray:
    """(C, M) recall -> (C, 1) int: per class the index of the model with the highest recall
    (first on ties; a class without test images (NaN row) gets model 0)."""
    r = np.asarray(per_class_recall, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError(f"per_class_recall must be (C, M) with M >= 1, got {r.shape}")
    return np.argmax(np.nan_to_num(r, nan=-1.0), axis=1)[:, None].astype(np.int64)


def heterogeneity_table(bench) -> pd.DataFrame:
    """One row per target (plus "Avg."): classes, distinct best models, mean spread, best single
    model (name and accuracy), per-class max recall, per-class oracle (reused) and the gap.

    ``bench``: an :class:`mll.benchmark.MLLBenchmark` (``tasks``, ``models``, ``per_class_accuracy``,
    ``ground_truth``, ``per_class_oracle_accuracy``)."""
    gt = bench.ground_truth()
    rows = {}
    for t in bench.tasks:
        r = bench.per_class_accuracy(t.name)
        ok = ~np.isnan(r).any(axis=1)
        best = per_class_oracle_models(r[ok])[:, 0]
        acc = gt[t.name]
        oracle = bench.per_class_oracle_accuracy(t.name)
        rows[t.name] = {"classes": int(r.shape[0]), "distinct best models": int(len(set(best.tolist()))),
                        "mean spread": float(np.mean(np.ptp(r[ok], axis=1))),
                        "best single model": str(acc.idxmax()), "best single acc": float(acc.max()),
                        "per-class max recall": float(np.mean(r[ok].max(axis=1))),
                        "per-class oracle": float(oracle), "oracle - best single": float(oracle - acc.max())}
    table = pd.DataFrame(rows).T
    num = ["classes", "distinct best models", "mean spread", "best single acc", "per-class max recall",
           "per-class oracle", "oracle - best single"]
    avg = {c: float(pd.to_numeric(table[c]).mean()) for c in num}
    avg["best single model"] = "(per target)"        # as the main table's "best single model (oracle)" row
    table.loc["Avg."] = pd.Series(avg)
    return table[["classes", "distinct best models", "mean spread", "best single model", "best single acc",
                  "per-class max recall", "per-class oracle", "oracle - best single"]]
