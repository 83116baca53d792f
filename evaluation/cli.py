"""Command line shared by ``evaluate_metric_cls.py`` and ``evaluate_metric_caption.py``.

A script states its defaults in a :class:`ScriptDefaults` (its config constants) and calls
:func:`main`; every default can be overridden on the command line (``--help``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from data.cache import CacheMissingError
from data.ground_truth import list_groups, load_ground_truth, register_ground_truth_file

from .report import print_report, write_report
from .results import save_results
from .runner import evaluate

__all__ = ["ScriptDefaults", "build_parser", "main"]


@dataclass(frozen=True)
class ScriptDefaults:
    """Config constants of an evaluation script. ``models``/``datasets`` None = the ground-truth
    group's; ``metrics`` None = the task's default set; ``results_dir`` may contain ``{group}``."""

    task: str
    group: Optional[str]
    models: Optional[Tuple[str, ...]]
    datasets: Optional[Tuple[str, ...]]
    metrics: Optional[Tuple[str, ...]]
    encoders: Tuple[str, ...]
    cache_dir: Path
    results_dir: str
    stack_method: str = "project"
    random_state: int = 0
    n_jobs: int = 1


def build_parser(defaults: ScriptDefaults, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default=defaults.task,
                   help="target task (evaluation.runner.TASKS; the modules of tasks/ add vqa, rec, ...)")
    p.add_argument("--group", default=None,
                   help=f"ground-truth group (default: {defaults.group} for --task {defaults.task}, else the "
                        f"task's own; available: {', '.join(list_groups())})")
    p.add_argument("--ground-truth-file", type=Path, default=None,
                   help="JSON table to register and use as the ground truth (schema: data.ground_truth)")
    p.add_argument("--no-ground-truth", action="store_true",
                   help="rank without ground truth (then --models and --datasets are required)")
    p.add_argument("--models", nargs="+", default=defaults.models, help="default: the group's models")
    p.add_argument("--datasets", nargs="+", default=defaults.datasets, help="default: the group's datasets")
    p.add_argument("--metrics", nargs="+", default=defaults.metrics, help="default: the task's metric set")
    p.add_argument("--encoders", nargs="+", default=None,
                   help=f"text encoders of the label embeddings (default: {' '.join(defaults.encoders)}, or the task's own)")
    p.add_argument("--cache-dir", type=Path, default=defaults.cache_dir, help="feature-cache root (data.cache layout)")
    p.add_argument("--results-dir", default=defaults.results_dir, help="results root ({group} is filled in)")
    p.add_argument("--stack-method", default=defaults.stack_method,
                   help="how label embeddings of different widths are stacked (Label_embedding.stack_label_embeddings)")
    p.add_argument("--random-state", type=int, default=defaults.random_state)
    p.add_argument("--n-jobs", type=int, default=defaults.n_jobs,
                   help="models scored at once in worker processes (one BLAS thread each); e.g. the number of cores")
    p.add_argument("--bootstrap", type=int, default=0,
                   help="print / save a bootstrap interval of the weighted tau with this many resamples "
                        "(model subsets; evaluation.uncertainty); 0: none")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG report")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _print_wall_time(result, metric: str = "emms", baseline: str = "logme_flabel") -> None:
    """EMMS vs LogME-on-the-same-F-labels wall time of this run (sum over models and datasets)."""
    sums = {}
    for name in (metric, baseline):
        seconds = [s for r in result.datasets.values() for s in r.seconds.get(name, {}).values()]
        if not seconds:
            return
        sums[name] = sum(seconds)
    ratio = sums[baseline] / sums[metric] if sums[metric] > 0 else float("inf")
    print(f"\nwall time (metric calls only): {metric} {sums[metric]:.3f} s, {baseline} {sums[baseline]:.3f} s, "
          f"{baseline}/{metric} = {ratio:.2f}x")


def main(defaults: ScriptDefaults, description: str, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, evaluate, write tables (CSV/JSON) and figures, print the report."""
    import tasks  # noqa: F401  (registers the task plugins; imported here: tasks imports evaluation)
    from .runner import get_task

    args = build_parser(defaults, description).parse_args(argv)
    try:
        spec = get_task(args.task)
    except KeyError as exc:
        raise SystemExit(f"error: {exc.args[0]}") from None
    own = args.task == defaults.task
    group = args.group if args.group is not None else (defaults.group if own else spec.default_group)
    encoders = args.encoders if args.encoders is not None else (
        defaults.encoders if own or spec.default_encoders is None else spec.default_encoders)
    if args.ground_truth_file is not None:
        group = register_ground_truth_file(args.ground_truth_file)
    truth = None if args.no_ground_truth or group is None else load_ground_truth(group)
    if truth is None and (args.models is None or args.datasets is None):
        raise SystemExit("without ground truth, --models and --datasets must be given")
    datasets = list(args.datasets) if args.datasets is not None else list(truth)
    results_dir = Path(str(args.results_dir).format(group=group if truth is not None else "no_ground_truth"))
    try:
        result = evaluate(args.cache_dir, results_dir, datasets=datasets, models=args.models, metrics=args.metrics,
                          encoders=tuple(encoders), task=spec.name, ground_truth=truth,
                          group=group if truth is not None else None, stack_method=args.stack_method,
                          random_state=args.random_state, progress=not args.quiet, n_jobs=args.n_jobs)
    except CacheMissingError as exc:  # a user-facing condition: the message names every missing file
        raise SystemExit(f"error: {exc}") from None
    written = save_results(result, results_dir)
    if not args.no_plots:
        written.update(write_report(result, results_dir / "plots"))
    print_report(result)
    if args.bootstrap > 0 and truth is not None:
        from .report import format_bootstrap
        from .results import save_bootstrap
        from .uncertainty import bootstrap_rank_measures
        boot = bootstrap_rank_measures(list(result.datasets.values()), n_boot=args.bootstrap,
                                       random_state=args.random_state)
        written.update(save_bootstrap(boot, results_dir))
        print(format_bootstrap(boot))
    _print_wall_time(result)
    print(f"\n{result.computed} score(s) computed, {result.reused} reused from {results_dir / 'scores'}")
    print(f"results written under {results_dir} ({len(written)} files)")
    return 0
