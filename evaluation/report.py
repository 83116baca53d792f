"""The report: text tables and PNG figures of an evaluation.

* :func:`plot_scores_vs_truth` — one PNG per dataset, one panel per metric: score (y) against the
  fine-tuned value (x), each point annotated with its model, titled with the metric's weighted tau.
* :func:`plot_weighted_tau_summary` — one PNG: per metric the mean weighted tau over datasets
  (bar) +- its standard deviation (error bar), each dataset's value as a dot.
* :func:`plot_agreement` — one PNG per dataset: the metric x metric Kendall-tau heatmap (the view
  that needs no ground truth).
* :func:`format_dataset_report` / :func:`format_summary` — the text tables the scripts print.
* :func:`markdown_table` — the README's table of a written results directory
  (``scripts/results_table.py``).

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no display, no
global backend switch) and written atomically.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from data.cache import atomic_write

from .runner import DatasetResult, EvaluationResult
from .tables import RANK_MEASURES, agreement_table, ranking_table, scores_table, summary_table

__all__ = ["plot_scores_vs_truth", "plot_weighted_tau_summary", "plot_agreement", "format_dataset_report", "format_bootstrap",
           "format_summary", "print_report", "write_report", "markdown_table"]


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))
    return path


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return int(math.ceil(n / ncols)), ncols


def plot_scores_vs_truth(result: DatasetResult, path: str | os.PathLike, *, metrics: Optional[Sequence[str]] = None,
                         ncols: int = 4, dpi: int = 110) -> Path:
    """Scatter score vs fine-tuned value, one panel per metric, for one dataset; returns the PNG path."""
    if result.ground_truth is None:
        raise ValueError(f"dataset {result.dataset!r} has no ground truth: plot_scores_vs_truth needs it "
                         "(use plot_agreement for a ground-truth-free view)")
    metrics = list(result.metrics if metrics is None else metrics)
    unknown = [m for m in metrics if m not in result.scores]
    if unknown or not metrics:
        raise ValueError(f"metrics {unknown or metrics} not in the result of {result.dataset!r} ({result.metrics})")
    table = ranking_table(result)
    nrows, ncols = _grid(len(metrics), ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        scores = result.scores[metric]
        models = [m for m in result.models if m in scores and math.isfinite(scores[m])]
        x = [result.ground_truth[m] for m in models]
        y = [scores[m] for m in models]
        ax.scatter(x, y, s=18, color="tab:blue")
        for m, xi, yi in zip(models, x, y):
            ax.annotate(m, (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
        wt = table.loc[metric].get("weighted_tau", np.nan)
        ax.set_title(f"{metric}  (weighted tau {wt:.3f})", fontsize=9)
        ax.set_xlabel("fine-tuned value", fontsize=8)
        ax.set_ylabel("score", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"{result.dataset}: transferability score vs fine-tuned value")
    return _save(fig, path, dpi)


def plot_weighted_tau_summary(results: Sequence[DatasetResult], path: str | os.PathLike, *,
                              measure: str = "weighted_tau", dpi: int = 110) -> Path:
    """Bar per metric: mean of ``measure`` over datasets +- std, with each dataset as a dot."""
    if measure not in RANK_MEASURES:
        raise ValueError(f"unknown rank measure {measure!r}; available: {', '.join(RANK_MEASURES)}")
    with_truth = [r for r in results if r.ground_truth is not None]
    if not with_truth:
        raise ValueError("plot_weighted_tau_summary needs at least one dataset with ground truth")
    per_dataset = {r.dataset: ranking_table(r)[measure] for r in with_truth}
    metrics: List[str] = []
    for r in with_truth:
        metrics += [m for m in r.metrics if m not in metrics]
    values = pd.DataFrame(per_dataset).reindex(metrics)  # metric x dataset
    mean, std = values.mean(axis=1, skipna=True), values.std(axis=1, ddof=0, skipna=True)
    fig = Figure(figsize=(max(6.0, 0.7 * len(metrics) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    pos = np.arange(len(metrics))
    ax.bar(pos, mean.to_numpy(), yerr=std.to_numpy(), color="lightsteelblue", edgecolor="steelblue", capsize=3,
           label=f"mean over {len(with_truth)} dataset(s) +- std")
    rng = np.random.default_rng(0)  # jitter of the dots only
    cmap = matplotlib.colormaps["tab20"]
    for j, dataset in enumerate(values.columns):
        color = cmap(j % 20)
        ax.scatter(pos + rng.uniform(-0.2, 0.2, len(pos)), values[dataset].to_numpy(), s=12, color=color,
                   label=dataset, zorder=3)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(pos, metrics, rotation=45, ha="right")
    ax.set_ylabel(measure.replace("_", " "))
    ax.set_title(f"{measure.replace('_', ' ')} of each metric against fine-tuned values")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path, dpi)


def plot_agreement(result: DatasetResult, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Heatmap of the metric x metric Kendall tau of one dataset."""
    table = agreement_table(result)
    n = len(table)
    fig = Figure(figsize=(1.0 + 0.5 * n, 0.8 + 0.45 * n), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(table.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(n), table.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), table.index, fontsize=7)
    for i in range(n):
        for j in range(n):
            v = table.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="Kendall tau")
    ax.set_title(f"{result.dataset}: agreement between metrics", fontsize=9)
    return _save(fig, path, dpi)


def _fmt(df: pd.DataFrame) -> str:
    return df.to_string(float_format=lambda v: f"{v:.4g}", na_rep="-")


def format_dataset_report(result: DatasetResult) -> str:
    """The text block printed per dataset: scores (metric x model) and the ranking table."""
    lines = [f"=== {result.dataset} ({len(result.models)} models, {len(result.metrics)} metrics; "
             f"{result.computed} computed, {result.reused} reused) ===",
             "scores (higher = predicted to transfer better):", _fmt(scores_table(result)), "",
             ("rank correlation with fine-tuned values, wall seconds:" if result.ground_truth is not None
              else "no ground truth: models ranked first and wall seconds:"),
             _fmt(ranking_table(result))]
    for metric, models in result.skipped.items():
        for model, reason in models.items():
            lines.append(f"skipped {metric} for {model}: {reason}")
    if result.ground_truth is None and len(result.metrics) > 1:
        lines += ["", "agreement between metrics (Kendall tau):", _fmt(agreement_table(result))]
    return "\n".join(lines)


def format_summary(results: Sequence[DatasetResult]) -> str:
    """The across-datasets average table as text."""
    return f"=== average over {len(results)} dataset(s) ===\n" + _fmt(summary_table(results))


def format_bootstrap(boot) -> str:
    """The bootstrap interval table (:func:`evaluation.uncertainty.format_interval_table`) as text."""
    from .uncertainty import format_interval_table

    noise = "ground-truth seed noise and " if boot.seed_noise else ""
    head = (f"=== {boot.measure}: mean over datasets, {int(boot.confidence * 100)}% bootstrap interval over "
            f"{noise}model subsets ({boot.subset_fraction:.0%} of the models, {boot.n_boot} replicates) ===")
    if not boot.informative:
        head += ("\n(no seed noise and too few models per dataset to leave one out: the intervals are points "
                 "and no difference is called significant)")
    table = format_interval_table(boot)
    short = boot.summary["n_scored"] < boot.summary["n_models"]
    partial = [m for m in table.index if short[m]]
    if partial:
        head += (f"\n(listed last: {', '.join(partial)} scored only some models (no source head, or features "
                 "they refuse), so they are judged on an easier problem and are not comparable with the others)")
    text = head + "\n" + table.to_string()
    res = boot.resolution
    if res is not None and res["pairs_tested"].sum() > 0:
        shown = res.assign(separated_pairs=(100 * res["separated_pairs"]).round(0),
                           accuracy_range=res["accuracy_range"].round(2),
                           median_seed_std=res["median_seed_std"].round(2))
        text += ("\n\n=== ground-truth resolution: share of model pairs (%) whose fine-tuned means differ "
                 "beyond their seed noise (Welch t-test, 5 %) ===\n" +
                 shown[["n_models", "accuracy_range", "median_seed_std", "pairs_tested", "separated_pairs"]].to_string())
    return text


def print_report(result: EvaluationResult) -> None:
    """Print every dataset's tables and the across-datasets summary."""
    for r in result.datasets.values():
        print(format_dataset_report(r), end="\n\n")
    print(format_summary(list(result.datasets.values())))


def write_report(result: EvaluationResult, out_dir: str | os.PathLike) -> Dict[str, Path]:
    """All figures of ``result`` under ``out_dir``: ``{dataset}_scores_vs_truth.png`` (with ground truth)
    or ``{dataset}_agreement.png`` (without), and ``summary_weighted_tau.png`` (with ground truth)."""
    out = Path(out_dir)
    written: Dict[str, Path] = {}
    for name, r in result.datasets.items():
        if r.ground_truth is not None:
            written[f"{name}_scores_vs_truth"] = plot_scores_vs_truth(r, out / f"{name}_scores_vs_truth.png")
        else:
            written[f"{name}_agreement"] = plot_agreement(r, out / f"{name}_agreement.png")
    results = list(result.datasets.values())
    if any(r.ground_truth is not None for r in results):
        written["summary_weighted_tau"] = plot_weighted_tau_summary(results, out / "summary_weighted_tau.png")
    return written


def markdown_table(results_dir: str | os.PathLike, *, digits: int = 2) -> str:
    """The README's table of a written evaluation (``save_results`` + ``save_bootstrap`` under
    ``results_dir``): per metric the models scored per dataset, weighted tau per dataset, the mean
    with its bootstrap interval, mean Kendall tau, mean Pearson, mean Rel@1 and the seconds over all
    datasets. Metrics that scored every model first, each group by mean weighted tau (as
    :func:`evaluation.uncertainty.format_interval_table`). ``FileNotFoundError`` names a missing file."""
    root = Path(results_dir)
    need = [root / "summary.csv", root / "bootstrap" / "weighted_tau_summary.csv"]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"not a written evaluation with bootstrap (missing {', '.join(missing)})")
    summary = pd.read_csv(need[0], index_col="metric")
    boot = pd.read_csv(need[1], index_col="metric")
    datasets = [p.name[:-len("_ranking.csv")] for p in sorted((root / "tables").glob("*_ranking.csv"))]
    results_json = root / "results.json"           # its dataset order (else the file names')
    json_order = list(json.loads(results_json.read_text())["datasets"]) if results_json.is_file() else None
    order = [d for d in (json_order or datasets) if d in datasets]
    per = {d: pd.read_csv(root / "tables" / f"{d}_ranking.csv", index_col="metric") for d in order}
    partial = boot["n_scored"] < boot["n_models"]
    ranked = boot.assign(_partial=partial).sort_values(["_partial", "point"], ascending=[True, False]).index

    def num(v) -> str:
        return "—" if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v)) else f"{v:.{digits}f}"

    head = (["metric", "models scored"] + [f"wτ {d}" for d in order] +
            ["mean wτ [95% CI]", "mean τ", "mean Pearson", "mean Rel@1", "seconds (all sets)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in ranked:
        b = boot.loc[m]
        ci = (f"{num(b['point'])} [{num(b['ci_low'])}, {num(b['ci_high'])}]" if math.isfinite(b["point"]) else "—")
        scored = "/".join(str(int(per[d].loc[m, "n_models"])) if m in per[d].index else "0" for d in order)
        row = ([m, scored] + [num(per[d].loc[m, "weighted_tau"]) if m in per[d].index else "—" for d in order] +
               [ci, num(summary.loc[m, "kendall_tau"]), num(summary.loc[m, "pearson"]),
                num(summary.loc[m, "rel@1"]), f"{summary.loc[m, 'seconds']:.1f}"])
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
