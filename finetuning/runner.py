"""One (model, dataset) fine-tuning run with learning-rate selection, and the resumable benchmark.

Protocol (:class:`~finetuning.config.FinetuneConfig` holds the numbers):

1. From the dataset's ``train`` split draw, per class, ``n_train`` training and ``n_val`` validation
   samples (disjoint, stratified, seeded); from its ``test`` split ``n_test`` per class
   (:func:`finetuning.splits.protocol_subsets`; the training images are the ones the metrics score).
2. For every learning rate of the grid: build a fresh pre-trained model with a new linear head
   (``model_factory(name, num_classes)``, same seed, so the head starts identical), fine-tune every
   parameter for ``epochs`` epochs (:func:`finetuning.engine.train_model`), measure validation and
   test accuracy. While the best validation accuracy sits at the grid's edge, extend the grid by a
   decade on that side (at most ``max_lr_extensions`` times; ``lr_bracketed`` records the outcome).
3. At the learning rate with the best validation accuracy (:func:`select_best_lr`) repeat the run
   with ``n_seeds`` seeds and report the mean test accuracy and its standard deviation; test
   accuracy never influences the choice.

This is the EMMS / LogME fine-tuning ground truth (grid-searched hyper-parameters, best model's
test accuracy; Meng et al., NeurIPS 2023; You et al., ICML 2021) scaled down to a CPU budget.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from .claims import CellClaims
from .config import FinetuneConfig
from .engine import (accuracy_percent, check_input_size, check_precision, prepare_inputs, train_model,
                     use_channels_last)
from .results import ResultsStore
from .splits import protocol_subsets
from .table import GROUP, build_table

__all__ = ["TimeBudgetExceeded", "select_best_lr", "next_lr", "is_bracketed", "finetune_pair", "FinetuneUnit", "run_benchmark",
           "default_model_factory", "default_dataset_getter", "LR_EXTENSION_FACTOR", "LR_LIMITS", "cell_precision"]

ModelFactory = Callable[[str, int], tuple]  # (name, num_classes) -> (nn.Module, preprocess)
DatasetGetter = Callable[..., object]       # (name, split=...) -> dataset with .targets, .classes


def default_model_factory(name: str, num_classes: int) -> tuple:
    """``models.create_trainable(name, num_classes)``: the project's pre-trained backbones."""
    from models import create_trainable

    return create_trainable(name, num_classes)


def default_dataset_getter(name: str, split: str):
    """``data.get_dataset(name, split=split)``: the project's datasets."""
    from data import get_dataset

    return get_dataset(name, split=split)


def select_best_lr(val_acc: Mapping[float, float]) -> float:
    """Learning rate with the highest validation accuracy; ties go to the first in mapping order.

    Raises ``ValueError`` on an empty mapping or a non-finite accuracy.
    """
    if not val_acc:
        raise ValueError("select_best_lr needs at least one (lr, validation accuracy) pair")
    best_lr, best = None, -np.inf
    for lr, acc in val_acc.items():
        if not np.isfinite(acc):
            raise ValueError(f"validation accuracy of lr={lr} is {acc!r}")
        if acc > best:
            best_lr, best = lr, acc
    return best_lr


def _targets(ds, where: str) -> np.ndarray:
    if not hasattr(ds, "targets") or not hasattr(ds, "classes"):
        raise ValueError(f"{where}: dataset must expose .targets and .classes")
    y = np.asarray(ds.targets)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: .targets must be 1-D integer labels, got {y.dtype} {y.shape}")
    k = len(ds.classes)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{where}: labels must lie in [0, {k}) (len(classes)), got [{y.min()}, {y.max()}]")
    return y


class TimeBudgetExceeded(RuntimeError):
    """Raised before a training run would start after the benchmark's deadline (work so far is kept)."""


#: factor of one grid extension (a decade) and the range the adaptive search stays inside
LR_EXTENSION_FACTOR = 10.0
LR_LIMITS = (1e-7, 1.0)


def next_lr(val_acc: Mapping[float, float], best_lr: float) -> Optional[float]:
    """The learning rate the adaptive search tries next, or ``None`` when ``best_lr`` is bracketed.

    ``best_lr`` at the top of the evaluated values -> ``best_lr * 10``; at the bottom ->
    ``best_lr / 10``; interior (or the next value would leave :data:`LR_LIMITS`) -> ``None``.
    A single evaluated value counts as the top edge.
    """
    lrs = sorted(val_acc)
    if best_lr == lrs[-1]:
        cand = best_lr * LR_EXTENSION_FACTOR
    elif best_lr == lrs[0]:
        cand = best_lr / LR_EXTENSION_FACTOR
    else:
        return None
    cand = float(f"{cand:.6g}")        # 3e-3 * 10 -> 0.03, not 0.030000000000000002
    return cand if LR_LIMITS[0] <= cand <= LR_LIMITS[1] and cand not in val_acc else None


def is_bracketed(lrs: Sequence[float], best_lr: float) -> bool:
    """True when ``best_lr`` has an evaluated value on each side (strictly inside the grid)."""
    return min(lrs) < best_lr < max(lrs)


def cell_precision(store: Optional[ResultsStore], model: str, dataset: str, requested: str) -> str:
    """The precision the cell (``model``, ``dataset``) trains in: that of its finished runs in
    ``store`` (a run without the field was ``"fp32"``), else ``requested``.

    A cell started in another precision than ``requested`` continues in its own, said on stdout: its
    learning-rate search and seeds are compared with each other, so they share one arithmetic. A
    cell whose finished runs disagree is a ``ValueError`` naming them.
    """
    done = {} if store is None else store.trials(model, dataset)
    used = sorted({t.get("precision", "fp32") for t in done.values()})
    if len(used) > 1:
        raise ValueError(f"{model} on {dataset}: the finished runs in {store.path} mix precisions {used}; "
                         "delete the cell's trials of one of them")
    if used and used[0] != requested:
        print(f"{model} on {dataset}: continues in {used[0]} (its {len(done)} finished run(s)), "
              f"not the requested {requested}")
        return used[0]
    return requested


def finetune_pair(model_name: str, dataset_name: str, config: FinetuneConfig, *,
                  model_factory: ModelFactory = default_model_factory,
                  dataset_getter: DatasetGetter = default_dataset_getter,
                  progress: bool = True, store: Optional[ResultsStore] = None,
                  deadline: Optional[float] = None, precision: str = "fp32") -> dict:
    """Fine-tune ``model_name`` on ``dataset_name``: adaptive lr search, then ``n_seeds`` seeds.

    1. Subsets: :func:`finetuning.splits.protocol_subsets` (train / val from the train split,
       test from the test split), fixed by ``config.seed`` for every run.
    2. Search (seed ``config.seed``): one run per value of ``config.lrs``; while the best
       validation accuracy sits at the edge of the evaluated values, add the next decade on that
       side (:func:`next_lr`), at most ``config.max_lr_extensions`` times.
    3. Seeds: at the chosen lr, runs with seeds ``config.seeds`` (the search run is the first).

    Every run builds a fresh model after ``torch.manual_seed(seed)`` and shuffles batches with a
    generator seeded by ``seed``. With ``store`` every finished run is saved at once and reused on a
    re-run (resume inside a pair). ``deadline`` (a ``time.time()`` value): no new run starts after
    it (:class:`TimeBudgetExceeded`; finished runs are in ``store``). ``precision``: the training
    steps' arithmetic (:data:`finetuning.engine.PRECISIONS`); one cell never mixes two, so a cell
    whose finished runs in ``store`` used another one continues in theirs (:func:`cell_precision`).

    Record keys: ``model, dataset, num_classes, n_train, n_val, n_test`` (totals), ``seed``,
    ``input_size`` ([h, w]), ``best_lr``, ``lr_bracketed``, ``val_acc`` (mean over seeds),
    ``test_acc`` (mean over seeds, percent), ``test_acc_seeds``, ``val_acc_seeds``,
    ``test_acc_std`` (sample std, ddof=1; ``None`` with one seed), ``seeds``, ``per_lr`` (the
    search runs ``{lr, seed, val_acc, test_acc, train_loss, memory_format, seconds}`` in evaluation
    order; ``memory_format``: :func:`finetuning.engine.use_channels_last`; plus the network's
    ``execution_record()`` when it has one, e.g. ``fused`` of the ONNX networks),
    ``seed_runs`` (the runs at ``best_lr``, seed order), ``seconds`` (sum of the runs' times),
    ``precision`` (also in every run; a record or run without it was trained in ``"fp32"``).
    """
    where = f"{model_name} on {dataset_name}"
    precision = cell_precision(store, model_name, dataset_name, check_precision(precision))
    train_ds = dataset_getter(dataset_name, split="train")
    test_ds = dataset_getter(dataset_name, split="test")
    y_train_all = _targets(train_ds, f"{dataset_name} (train split)")
    y_test_all = _targets(test_ds, f"{dataset_name} (test split)")
    num_classes = len(train_ds.classes)
    if len(test_ds.classes) != num_classes:
        raise ValueError(f"{dataset_name}: train split has {num_classes} classes, test split {len(test_ds.classes)}")
    tr_idx, va_idx, te_idx = protocol_subsets(y_train_all, y_test_all, config, name=dataset_name)

    box: dict = {}       # the input tensors, prepared once by the first run that is not resumed

    def inputs(preprocess, model) -> dict:
        if "tensors" not in box:
            box["tensors"] = {name: prepare_inputs(ds, idx, preprocess, config.resolution, config.size_multiple,
                                                   desc=f"{where}: {name}", progress=progress)
                              for name, ds, idx in (("train", train_ds, tr_idx), ("val", train_ds, va_idx),
                                                    ("test", test_ds, te_idx))}
            check_input_size(model, box["tensors"]["train"][0], num_classes, name=model_name)
        return box["tensors"]

    def trial(lr: float, seed: int) -> dict:
        if store is not None:
            done = store.get_trial(model_name, dataset_name, lr, seed)
            if done is not None:
                return done
        if deadline is not None and time.time() > deadline:
            raise TimeBudgetExceeded(f"time budget spent before {where} lr={lr:g} seed={seed}")
        t_lr = time.perf_counter()
        torch.manual_seed(seed)  # the head initialisation of this seed
        model, preprocess = model_factory(model_name, num_classes)
        memory_format = use_channels_last(model)
        t = inputs(preprocess, model)
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = t["train"], t["val"], t["test"]
        losses = train_model(model, x_tr, y_tr, lr=lr, epochs=config.epochs, batch_size=config.batch_size,
                             optimizer=config.optimizer, weight_decay=config.weight_decay,
                             warmup_fraction=config.warmup_fraction,
                             label_smoothing=config.label_smoothing,
                             freeze_bn_stats=config.freeze_bn_stats,
                             generator=torch.Generator().manual_seed(seed), precision=precision,
                             progress=progress, desc=f"{where} lr={lr:g} seed={seed}")
        rec = {"lr": lr, "seed": seed, "input_size": list(x_tr.shape[2:]),
               "val_acc": accuracy_percent(model, x_va, y_va, config.batch_size),
               "test_acc": accuracy_percent(model, x_te, y_te, config.batch_size),
               "train_loss": [round(v, 5) for v in losses], "memory_format": memory_format,
               "precision": precision, **getattr(model, "execution_record", dict)(),
               "seconds": round(time.perf_counter() - t_lr, 2)}
        del model
        if store is not None:
            store.put_trial(model_name, dataset_name, lr, seed, rec)
        return rec

    search: dict = {}
    for lr in config.lrs:
        search[lr] = trial(lr, config.seed)
    extensions = 0
    while True:
        best_lr = select_best_lr({lr: r["val_acc"] for lr, r in search.items()})
        cand = next_lr({lr: r["val_acc"] for lr, r in search.items()}, best_lr)
        if cand is None or extensions >= config.max_lr_extensions:
            break
        search[cand] = trial(cand, config.seed)
        extensions += 1
    seed_runs = [search[best_lr]] + [trial(best_lr, s) for s in config.seeds[1:]]
    test = [r["test_acc"] for r in seed_runs]
    val = [r["val_acc"] for r in seed_runs]
    runs = list(search.values()) + seed_runs[1:]
    return {"model": model_name, "dataset": dataset_name, "num_classes": num_classes,
            "n_train": int(tr_idx.size), "n_val": int(va_idx.size), "n_test": int(te_idx.size),
            "seed": config.seed, "seeds": list(config.seeds), "input_size": seed_runs[0]["input_size"],
            "best_lr": best_lr, "lr_bracketed": is_bracketed(list(search), best_lr),
            "val_acc": float(np.mean(val)), "test_acc": float(np.mean(test)),
            "val_acc_seeds": val, "test_acc_seeds": test,
            "test_acc_std": float(np.std(test, ddof=1)) if len(test) > 1 else None,
            "per_lr": list(search.values()), "seed_runs": seed_runs, "precision": precision,
            "seconds": round(sum(float(r["seconds"]) for r in runs), 2)}


@dataclass(frozen=True)
class FinetuneUnit:
    """One (model, dataset) cell of :func:`run_benchmark` as a unit of work for an executor
    (``executor.base.Executor``, e.g. one Ray task): the cell's runs resume from and are saved to
    ``partial_path`` (:class:`~finetuning.results.ResultsStore` merges concurrent writers under a
    file lock); a finished cell returns its record without training. ``None``: the deadline
    stopped it (finished runs are kept)."""

    model: str
    dataset: str
    config: FinetuneConfig
    partial_path: str
    model_factory: ModelFactory = default_model_factory
    dataset_getter: DatasetGetter = default_dataset_getter
    deadline: Optional[float] = None
    resources: Any = field(default=None, compare=False)
    precision: str = "fp32"

    def run(self) -> Optional[dict]:
        store = ResultsStore(self.partial_path, self.config)
        if store.has(self.model, self.dataset):
            return store.get(self.model, self.dataset)
        with CellClaims(self.partial_path).claim(self.model, self.dataset) as mine:
            if not mine:                   # another run is training this cell
                return {"model": self.model, "dataset": self.dataset, HELD_ELSEWHERE: True}
            store = ResultsStore(self.partial_path, self.config)
            if store.has(self.model, self.dataset):
                return store.get(self.model, self.dataset)
            previous_threads = torch.get_num_threads()
            torch.set_num_threads(self.config.num_threads)
            try:
                record = finetune_pair(self.model, self.dataset, self.config, model_factory=self.model_factory,
                                       dataset_getter=self.dataset_getter, progress=False, store=store,
                                       deadline=self.deadline, precision=self.precision)
            except TimeBudgetExceeded:
                return None
            finally:
                torch.set_num_threads(previous_threads)
            store.put(record)
            return record


#: key of a :class:`FinetuneUnit` result whose cell another run held (``finetuning.claims``)
HELD_ELSEWHERE = "held_elsewhere"


def _finished(store: ResultsStore, pairs: Sequence[tuple]) -> int:
    """How many of this run's (model, dataset) ``pairs`` are finished (the file may hold others too)."""
    return sum(store.has(m, d) for m, d in pairs)


def _held_elsewhere(held: Sequence[tuple], store: ResultsStore, pairs: Sequence[tuple], partial_path) -> None:
    print(f"{len(held)} cell(s) are being trained by other runs sharing {partial_path} "
          f"({', '.join(f'{m}/{d}' for m, d in held[:6])}{', ...' if len(held) > 6 else ''}); "
          f"{_finished(store, pairs)} of {len(pairs)} pairs finished: the last run to finish writes the table "
          "(or re-run)")
    return None


def run_benchmark(models: Sequence[str], datasets: Sequence[str], config: FinetuneConfig,
                  output_path: str | Path, partial_path: str | Path, *,
                  model_factory: ModelFactory = default_model_factory,
                  dataset_getter: DatasetGetter = default_dataset_getter,
                  progress: bool = True, about: Optional[str] = None, group: str = GROUP,
                  skip: Optional[Callable[[str, str], bool]] = None,
                  deadline: Optional[float] = None, executor=None, resources=None,
                  precision: str | Callable[[str], str] = "fp32") -> Optional[dict]:
    """Fine-tune every model on every dataset, resumably, and write the ground-truth table.

    ``skip(model, dataset) -> True`` leaves a cell empty (e.g. a network pre-trained on data that
    overlaps the target: :func:`finetuning.protocol.excluded`); a dataset needs two filled cells.
    ``deadline`` (``time.time()`` value): no training run starts after it; the finished runs stay in
    ``partial_path`` and ``None`` is returned (no table written): re-run to continue.

    Each finished (model, dataset) record is written atomically to ``partial_path`` at once; a
    re-run with the same ``config`` skips the finished pairs (a different ``config`` is refused
    by :class:`~finetuning.results.ResultsStore`). ``executor`` (an ``executor.base.Executor``, e.g.
    Ray): the unfinished cells run as :class:`FinetuneUnit` s on it (``resources`` each), writing
    to the same partial file; ``None``: one after the other in this process. Either way a cell is
    trained only under its claim (:class:`finetuning.claims.CellClaims`): runs sharing the partial
    file (several ``finetune.py`` workers, on one machine or a cluster's shared disk) skip the
    cells another live run holds and train the others, so N identical workers split the table; a
    run that had to skip cells writes no table (the last one to finish does). ``precision``: a key of
    :data:`finetuning.engine.PRECISIONS` for every model, or ``model -> key`` (see
    :func:`finetune_pair`; a cell keeps the precision it started in). When every pair is done the table
    (:func:`finetuning.table.build_table`) is written atomically to ``output_path`` and returned.
    """
    from tqdm.auto import tqdm

    from data.cache import atomic_save_json

    models, datasets = list(models), list(datasets)
    for kind, names in (("models", models), ("datasets", datasets)):
        if not names:
            raise ValueError(f"run_benchmark needs at least one of {kind}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate {kind}: {names}")
    if len(models) < 2:
        raise ValueError("a ground-truth ranking needs at least two models")
    precision_of = precision if callable(precision) else (lambda _m, _p=precision: _p)
    for m in models:
        check_precision(precision_of(m))
    store = ResultsStore(partial_path, config)
    pairs = [(m, d) for d in datasets for m in models]
    if executor is not None:
        from executor.base import run_unit
        units = [FinetuneUnit(m, d, config, str(partial_path), model_factory, dataset_getter, deadline, resources,
                              precision=precision_of(m))
                 for m, d in pairs if not store.has(m, d) and not (skip is not None and skip(m, d))]
        out = executor.map(run_unit, units, resources=resources, desc="fine-tune", progress=progress)
        store = ResultsStore(partial_path, config)          # what the units wrote
        held = [(r["model"], r["dataset"]) for r in out if r is not None and r.get(HELD_ELSEWHERE)]
        if held:
            return _held_elsewhere(held, store, pairs, partial_path)
        if any(r is None for r in out):
            print(f"stopped: time budget spent; {_finished(store, pairs)} of {len(pairs)} pairs finished, "
                  f"partial results in {partial_path} (re-run to continue)")
            return None
    claims = CellClaims(partial_path)
    held = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        bar = tqdm(pairs, desc="fine-tune", unit="run", disable=not progress)
        for m, d in bar:
            bar.set_postfix_str(f"{m} / {d}")
            if skip is not None and skip(m, d):
                continue
            store = ResultsStore(partial_path, config)      # another run may have finished the cell
            if store.has(m, d):
                continue
            with claims.claim(m, d) as mine:
                if not mine:                                # another run is training it: go on
                    held.append((m, d))
                    continue
                store = ResultsStore(partial_path, config)
                if store.has(m, d):
                    continue
                try:
                    store.put(finetune_pair(m, d, config, model_factory=model_factory, dataset_getter=dataset_getter,
                                            progress=progress, store=store, deadline=deadline,
                                            precision=precision_of(m)))
                except TimeBudgetExceeded as stop:
                    print(f"stopped: {stop}; {_finished(store, pairs)} of {len(pairs)} pairs finished, "
                          f"partial results in {partial_path} (re-run to continue)")
                    return None
    finally:
        torch.set_num_threads(previous_threads)
    store = ResultsStore(partial_path, config)
    held = [(m, d) for m, d in held if not store.has(m, d)]
    if held:
        return _held_elsewhere(held, store, pairs, partial_path)
    table = build_table({(m, d): store.get(m, d) for m, d in pairs if store.has(m, d)}, config,
                        about=about, group=group)
    empty: dict = {}
    for m, d in pairs:
        if not store.has(m, d):
            empty.setdefault(d, []).append(m)
    table["excluded_cells"] = empty          # {dataset: [models]} left empty by ``skip``
    atomic_save_json(output_path, table)
    return table
