"""The ranking printed by ``select_models.py``: models ordered by a primary metric, with every other
metric's rank beside it and a recommendation that says how far the metrics agree.

Scores are compared at :data:`evaluation.tables.SIGNIFICANT_DIGITS` significant digits (the tables'
rule): models whose scores agree there are tied and share a rank (``1, 1, 3``). The order is decided by
a stated rule, never by the order the models were listed in:

1. the primary metric's score (higher is better);
2. models tied on it: the mean of their ranks under the other metrics that scored every tied model
   (lower is better), leaving out metrics that give every model the same score;
3. still tied (or no other metric scored them all): a tie, reported as one -- same ``rank``,
   ``tied`` True, and the recommendation lists the tied models instead of picking one.

Models the primary metric could not score (skipped, or a non-finite score) come last, without a rank,
and the recommendation says so.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd

from .runner import DatasetResult
from .tables import SIGNIFICANT_DIGITS, _comparable

__all__ = ["selection_table", "format_selection", "tie_rank"]

TIE_MARK = "="


def tie_rank(scores: Mapping[str, float]) -> Dict[str, int]:
    """Competition ranks (1 = highest; equal scores share the best rank: 1, 1, 3) of the finite
    ``scores`` compared at the tables' precision; non-finite scores get no rank."""
    s = {m: v for m, v in _comparable(scores).items() if math.isfinite(v)}
    return {m: 1 + sum(w > v for w in s.values()) for m, v in s.items()}


def _rank(table: pd.DataFrame, model: str, metric: str) -> float:
    return float(table.loc[model, f"rank_{metric}"])


def _flat(table: pd.DataFrame, metric: str) -> bool:
    """True when ``metric`` gave every model it scored (at least 2) the same score: it ranks nothing."""
    r = table[f"rank_{metric}"]
    return int(r.notna().sum()) > 1 and bool((r.dropna() == 1).all())


def _tie_break(table: pd.DataFrame, group: Sequence[str], others: Sequence[str]) -> Tuple[List[str], Dict[str, float]]:
    """The other metrics that ranked every model of ``group`` (and do not give all models one score),
    and each model's mean rank under them."""
    common = [m for m in others if not _flat(table, m) and all(not math.isnan(_rank(table, g, m)) for g in group)]
    if not common:
        return [], {}
    return common, {g: float(np.mean([_rank(table, g, m) for m in common])) for g in group}


def selection_table(result: DatasetResult, *, primary: str) -> pd.DataFrame:
    """One row per model, best first (module rule): final ``rank`` (ties share it; NaN = not scored
    by ``primary``), ``tied``, ``decided_by`` (what placed the model), its ``primary`` score, its rank
    under every metric (ties share) and ``mean_rank`` over the metrics that ranked it. Rows of equal
    rank are in model-name order, so the table does not depend on the order of ``result.models``."""
    if primary not in result.scores:
        raise ValueError(f"primary metric {primary!r} was not computed; computed: {', '.join(result.metrics)}")
    ranks = {metric: tie_rank(result.scores[metric]) for metric in result.metrics}
    models = sorted(result.models)
    df = pd.DataFrame(index=pd.Index(models, name="model"))
    df["rank"] = np.nan
    df["tied"] = False
    df["decided_by"] = ""
    df[f"{primary}_score"] = [result.scores[primary].get(m, np.nan) for m in models]
    for metric in result.metrics:
        df[f"rank_{metric}"] = [float(ranks[metric].get(m, np.nan)) for m in models]
    df["mean_rank"] = [float(np.mean(got)) if (got := [ranks[k][m] for k in result.metrics if m in ranks[k]])
                       else np.nan for m in models]

    others = [m for m in result.metrics if m != primary]
    scored = [m for m in models if m in ranks[primary]]
    key: Dict[str, Tuple[int, int]] = {}
    for r in sorted({ranks[primary][m] for m in scored}):
        group = [m for m in scored if ranks[primary][m] == r]
        common, mean = _tie_break(df, group, others) if len(group) > 1 else ([], {})
        for m in group:
            within = 1 + sum(mean[g] < mean[m] for g in group) if mean else 1
            key[m] = (r, within)
            if len(group) == 1:
                df.loc[m, "decided_by"] = primary
            elif mean and sum(mean[g] == mean[m] for g in group) == 1:
                df.loc[m, "decided_by"] = f"mean rank over {', '.join(common)}"
            else:
                df.loc[m, "decided_by"] = "tie"
    for m in scored:
        df.loc[m, "rank"] = 1 + sum(key[g] < key[m] for g in scored)
        df.loc[m, "tied"] = sum(key[g] == key[m] for g in scored) > 1
    for m in models:
        if m not in ranks[primary]:
            reason = result.skipped.get(primary, {}).get(m)
            if reason is None:
                value = result.scores[primary].get(m)
                reason = "no score" if value is None else f"non-finite score {value}"
            df.loc[m, "decided_by"] = f"not scored by {primary}: {reason}"
    order = sorted(models, key=lambda m: (m not in ranks[primary], df.loc[m, "rank"] if m in key else 0, m))
    return df.loc[order]


def _names(models: Sequence[str]) -> str:
    return ", ".join(models)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.drop(columns=["tied", "decided_by"])
    shown["rank"] = [("-" if math.isnan(r) else f"{int(r)}{TIE_MARK if t else ''}")
                     for r, t in zip(table["rank"], table["tied"])]
    return shown


def format_selection(table: pd.DataFrame, *, primary: str) -> str:
    """The table as text (``=`` marks a shared rank) plus the recommendation and what decided it."""
    lines: List[str] = [_display(table).to_string(float_format=lambda v: f"{v:.4g}")]
    others = [c[len("rank_"):] for c in table.columns if c.startswith("rank_") and c != f"rank_{primary}"]
    scored = table[table["rank"].notna()]
    unscored = table[table["rank"].isna()]
    if scored.empty:
        lines.append(f"\nNo model could be scored by {primary}, so there is no recommendation.")
        lines += [f"  {m}: {table.loc[m, 'decided_by']}" for m in unscored.index]
        return "\n".join(lines)
    lines.append("")
    best = list(scored.index[scored["rank"] == 1])
    group = sorted(scored.index[scored[f"rank_{primary}"] == 1])
    if len(group) > 1:
        value = table.loc[group[0], f"{primary}_score"]
        lines.append(f"{primary} cannot separate {_names(group)}: their scores are equal at {SIGNIFICANT_DIGITS} "
                     f"significant digits ({value:.{SIGNIFICANT_DIGITS}g}).")
        common, mean = _tie_break(table, group, others)
        if not common:
            lines.append("No other metric that ranks anything here scored all of them, so nothing breaks the tie.")
        else:
            means = ", ".join(f"{g} {mean[g]:.3g}" for g in sorted(group, key=lambda g: (mean[g], g)))
            lines.append(f"Tie-break: mean rank over the other metrics that scored them all "
                         f"({_names(common)}): {means}" + (";" if len(best) > 1 else "."))
            if len(best) > 1:
                lines.append("  the mean rank does not separate them either.")
    if len(best) > 1:
        lines.append(f"No single recommendation: {_names(best)} are tied. Fine-tune them all, or add images "
                     "or metrics to separate them.")
    else:
        top = best[0]
        ranked = [m for m in others if not math.isnan(table.loc[top, f"rank_{m}"]) and not _flat(table, m)]
        agree = [m + (" (shared)" if (table[f"rank_{m}"] == 1).sum() > 1 else "")
                 for m in ranked if table.loc[top, f"rank_{m}"] == 1]
        how = (f"ranked first by {primary}" if len(group) == 1
               else f"tied first by {primary}, ahead on the mean rank of {_names(_tie_break(table, group, others)[0])}")
        lines.append(f"Recommendation: {top} ({how}; {len(agree)} of {len(ranked)} other metric(s) also rank it "
                     f"first" + (f": {_names(agree)})" if agree else ")"))
    rest = scored[scored["rank"] > 1]
    if not rest.empty:
        nxt = list(rest.index[rest["rank"] == rest["rank"].min()])
        lines.append(f"Runner-up: {_names(nxt)}" + (" (tied)" if len(nxt) > 1 else "")
                     + ". Fine-tune the top two or three if the budget allows: the scores predict the fine-tuned "
                     "ranking, they do not replace it.")
    for m in unscored.index:
        lines.append(f"Not ranked: {m} ({table.loc[m, 'decided_by']}).")
    flat = [m for m in [primary] + others if _flat(table, m)]
    if flat:
        one = len(flat) == 1
        lines.append(f"Note: {_names(flat)} {'gives' if one else 'give'} every model the same score, so "
                     f"{'it ranks' if one else 'they rank'} nothing here and {'is' if one else 'are'} left out of "
                     "the agreement count and the tie-break (typical when there are fewer images than feature "
                     "dimensions).")
    return "\n".join(lines)
