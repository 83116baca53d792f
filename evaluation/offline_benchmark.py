"""The full offline benchmark: every candidate x every label encoder x every offline dataset.

What the metrics see is what fine-tuning starts from (:mod:`finetuning.protocol`): the protocol's
training images (``n_train_per_class`` per class), each model at the protocol resolution. The
protocol is read from the ground-truth group's file (``"protocol"``, written by ``finetune.py``), or,
while that table is still being filled, from its partial-results file, so that the scores and the
accuracies they are judged against always come from the same images and pipeline.

A (model, dataset) cell is scored when the model may be used on the dataset (a network pre-trained
here on the target's domain may not: ``models.target_allowed``) and, with a ground truth, when the
table has the cell. Rank measures per dataset (:mod:`evaluation.tables`) and bootstrap intervals over
ground-truth seed noise and model subsets (:mod:`evaluation.uncertainty`) are written under
``results_dir``. Everything is cached and resumable (features, label embeddings, scores).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from .runner import EvaluationResult, evaluate
from .uncertainty import BootstrapResult, bootstrap_rank_measures

__all__ = ["protocol_of", "finished_cells", "judging_truth", "benchmark_cells", "run_offline_benchmark"]


def protocol_of(group: str, partial_dir: str | os.PathLike):
    """The :class:`finetuning.FinetuneConfig` of ground-truth ``group``: from its table when it is
    complete, else from ``partial_dir/{group}.partial.json``; ``FileNotFoundError`` naming both."""
    from data.ground_truth import ground_truth_info, list_groups
    from finetuning import FinetuneConfig

    if group in list_groups():
        protocol = ground_truth_info(group).get("protocol")
        if not isinstance(protocol, Mapping):
            raise ValueError(f"ground-truth group {group!r} records no fine-tuning protocol")
        return FinetuneConfig.from_dict(protocol)
    partial = Path(partial_dir) / f"{group}.partial.json"
    if not partial.is_file():
        raise FileNotFoundError(f"no ground-truth group {group!r} and no partial results {partial}: "
                                f"run finetune.py to start the table")
    protocol = json.loads(partial.read_text()).get("protocol")
    if not isinstance(protocol, Mapping):
        raise ValueError(f"{partial} records no fine-tuning protocol")
    return FinetuneConfig.from_dict(protocol)


def finished_cells(group: str, partial_dir: str | os.PathLike, models: Sequence[str],
                   datasets: Sequence[str]) -> Tuple[dict, dict]:
    """``(truth, seeds)`` from the cells of ``partial_dir/{group}.partial.json`` finished so far (an
    interim ground truth while ``finetune.py`` fills the table), restricted to ``models`` and to the
    ``datasets`` with at least 2 finished, allowed cells among them (the others are left out).
    ``FileNotFoundError`` naming the file; ``ValueError`` when no dataset qualifies."""
    from finetuning.results import read_finished
    from models import target_allowed

    partial = Path(partial_dir) / f"{group}.partial.json"
    _, table, seeds = read_finished(partial)
    wanted = set(models)
    truth = {}
    for d in datasets:
        row = {m: v for m, v in table.get(d, {}).items() if m in wanted and target_allowed(m, d)}
        if len(row) >= 2:
            truth[d] = row
    if not truth:
        raise ValueError(f"{partial}: no dataset of {list(datasets)} has 2 finished cells yet")
    return truth, {d: {m: seeds[d][m] for m in row if m in seeds.get(d, {})} for d, row in truth.items()}


def judging_truth(group: str, partial_dir: str | os.PathLike, models: Sequence[str], datasets: Sequence[str], *,
                  finished: bool = False) -> Tuple[dict, dict, str]:
    """``(truth, seeds, label)`` to judge ``models`` on ``datasets`` against ground-truth ``group``:
    its table (``data.ground_truth``), or with ``finished`` the cells of its partial-results file
    finished so far (:func:`finished_cells`; ``truth`` then holds only the datasets that qualify).
    ``label`` names the group (and says when it is the interim judgement). Errors name the group,
    the datasets the table lacks or the partial file: ``FileNotFoundError`` / ``ValueError``."""
    from data.ground_truth import ground_truth_seeds, list_groups, load_ground_truth

    if finished:
        truth, seeds = finished_cells(group, partial_dir, models, datasets)
        return truth, seeds, f"{group} (finished cells of {group}.partial.json)"
    if group not in list_groups():
        hint = (f"; finetune.py is filling it in chunks ({Path(partial_dir) / f'{group}.partial.json'}): judge against "
                "its finished cells (--finished-cells)" if (Path(partial_dir) / f"{group}.partial.json").is_file()
                else "; run finetune.py to make it")
        raise FileNotFoundError(f"ground-truth group {group!r} is not there yet (have: {', '.join(list_groups())}){hint}, "
                                "or rank without one (--ground-truth none)")
    table, seeds = load_ground_truth(group), ground_truth_seeds(group)
    missing = [d for d in datasets if d not in table]
    if missing:
        raise ValueError(f"ground truth {group!r} has no table for {missing}; it covers {sorted(table)} "
                         "(or rank without one: --ground-truth none)")
    return ({d: table[d] for d in datasets}, {d: v for d, v in seeds.items() if d in datasets}, group)


def benchmark_cells(models: Sequence[str], datasets: Sequence[str],
                    truth: Optional[Mapping[str, Mapping[str, float]]] = None) -> Dict[str, list]:
    """``{dataset: [models scored on it]}``: allowed cells (``models.target_allowed``), and with
    ``truth`` only the cells it has. A dataset left with fewer than 2 models is an error."""
    from models import target_allowed

    cells = {}
    for d in datasets:
        ms = [m for m in models if target_allowed(m, d) and (truth is None or m in truth.get(d, {}))]
        if len(ms) < 2:
            raise ValueError(f"dataset {d!r}: only {len(ms)} model(s) to rank ({ms}); a ranking needs at least 2")
        cells[d] = ms
    return cells


def run_offline_benchmark(models: Sequence[str], datasets: Sequence[str], *, config,
                          cache_dir: str | os.PathLike, results_dir: str | os.PathLike,
                          encoders: Sequence[str] = ("minilm", "e5", "mpnet"), metrics: Optional[Sequence[str]] = None,
                          ground_truth: Optional[Mapping[str, Mapping[str, float]]] = None,
                          group: Optional[str] = None,
                          seeds: Optional[Mapping[str, Mapping[str, Sequence[float]]]] = None,
                          n_boot: int = 1000, batch_size: int = 64, random_state: int = 0, progress: bool = True,
                          log: Callable[[str], None] = print) -> Tuple[EvaluationResult, Optional[BootstrapResult]]:
    """Extract (protocol pipeline), embed the class names with every encoder, score and judge.

    Returns the evaluation result and, with a ground truth and ``n_boot`` > 0, the bootstrap of
    weighted tau (else ``None``). ``seeds``: per-seed ground-truth values (``data.ground_truth.ground_truth_seeds``).
    """
    from finetuning.protocol import protocol_extract
    from Label_embedding.embed import write_label_embeddings

    if not encoders:
        raise ValueError("give at least one text encoder for the label embeddings")
    cells = benchmark_cells(models, datasets, ground_truth)
    fingerprints: Dict[str, str] = {}
    for d, ms in cells.items():
        for r in protocol_extract(ms, [d], config, cache_dir, batch_size=batch_size, progress=progress, log=log):
            if r.fingerprint is not None:
                fingerprints[r.dataset] = r.fingerprint
        for enc in encoders:
            write_label_embeddings(d, enc, cache_dir, progress=progress, log=log)
    if ground_truth is not None:
        truth = {d: {m: ground_truth[d][m] for m in ms} for d, ms in cells.items()}
        result = evaluate(cache_dir, results_dir, datasets=list(cells), metrics=metrics, encoders=tuple(encoders),
                          ground_truth=truth, group=group, random_state=random_state, progress=progress, log=log,
                          expected_fingerprints=fingerprints)
        boot = (bootstrap_rank_measures(list(result.datasets.values()), seeds=seeds, n_boot=n_boot,
                                        random_state=random_state) if n_boot else None)
        return result, boot
    parts = [evaluate(cache_dir, results_dir, datasets=[d], models=ms, metrics=metrics, encoders=tuple(encoders),
                      random_state=random_state, progress=progress, log=log,
                      expected_fingerprints={d: fingerprints[d]} if d in fingerprints else None)
             for d, ms in cells.items()]
    merged = EvaluationResult(datasets={d: r for p in parts for d, r in p.datasets.items()}, task=parts[0].task,
                              encoders=parts[0].encoders, group=None)
    return merged, None
