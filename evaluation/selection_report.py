"""The ranking printed by ``select_models.py``: models ordered by a primary metric, with every other
metric's rank beside it and a recommendation that says how far the metrics agree."""
from __future__ import annotations

import math
from typing import List

import numpy as np
import pandas as pd

from .runner import DatasetResult

__all__ = ["selection_table", "format_selection"]


def selection_table(result: DatasetResult, *, primary: str) -> pd.DataFrame:
    """One row per model, best first by ``primary``: its ``primary`` score, its rank (1 = best) under
    every metric, and the mean rank over the metrics that scored it. Models the primary metric could
    not score (skipped, non-finite) come last."""
    if primary not in result.scores:
        raise ValueError(f"primary metric {primary!r} was not computed; computed: {', '.join(result.metrics)}")
    ranks = {}
    for metric in result.metrics:
        s = {m: v for m, v in result.scores[metric].items() if math.isfinite(v)}
        order = sorted(s, key=lambda m: -s[m])
        ranks[metric] = {m: i + 1 for i, m in enumerate(order)}
    rows = []
    for model in result.models:
        row = {f"{primary}_score": result.scores[primary].get(model, np.nan)}
        for metric in result.metrics:
            row[f"rank_{metric}"] = ranks[metric].get(model, np.nan)
        got = [ranks[m][model] for m in result.metrics if model in ranks[m]]
        row["mean_rank"] = float(np.mean(got)) if got else np.nan
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(result.models, name="model"))
    key = df[f"rank_{primary}"].fillna(np.inf)
    return df.loc[key.sort_values(kind="stable").index]


def format_selection(table: pd.DataFrame, *, primary: str) -> str:
    """The table as text plus a one-paragraph recommendation."""
    lines: List[str] = [table.to_string(float_format=lambda v: f"{v:.4g}")]
    rank_cols = [c for c in table.columns if c.startswith("rank_")]
    scored = table[table[f"rank_{primary}"].notna()]
    if scored.empty:
        lines.append(f"\nNo model could be scored by {primary}; see the notes above.")
        return "\n".join(lines)
    best = scored.index[0]
    agree = [c[len("rank_"):] for c in rank_cols if table.loc[best, c] == 1]
    others = [c[len("rank_"):] for c in rank_cols if c != f"rank_{primary}" and not math.isnan(table.loc[best, c])]
    n_agree = len([m for m in agree if m != primary])
    lines.append("")
    lines.append(f"Recommendation: {best} (ranked first by {primary}; "
                 f"{n_agree} of {len(others)} other metric(s) also rank it first"
                 + (f": {', '.join(m for m in agree if m != primary)})" if n_agree else ")"))
    if len(scored) > 1:
        runner_up = scored.index[1]
        lines.append(f"Runner-up: {runner_up}. Fine-tune the top two or three if the budget allows: "
                     "the scores predict the fine-tuned ranking, they do not replace it.")
    return "\n".join(lines)
