"""One (model, dataset) fine-tuning run with learning-rate selection, and the resumable benchmark.

Protocol (:class:`~finetuning.config.FinetuneConfig` holds the numbers):

1. From the dataset's ``train`` split draw, per class, ``n_train`` training and ``n_val`` validation
   samples (disjoint, stratified, seeded); from its ``test`` split ``n_test`` per class.
2. For every learning rate of the grid: build a fresh pre-trained model with a new linear head
   (``model_factory(name, num_classes)``, same seed, so the head starts identical), fine-tune every
   parameter for ``epochs`` epochs (:func:`finetuning.engine.train_model`), measure validation and
   test accuracy.
3. Report the test accuracy of the learning rate with the best validation accuracy
   (:func:`select_best_lr`); test accuracy never influences the choice.

This is the EMMS / LogME fine-tuning ground truth (grid-searched hyper-parameters, best model's
test accuracy; Meng et al., NeurIPS 2023; You et al., ICML 2021) scaled down to a CPU budget.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from .config import FinetuneConfig
from .engine import accuracy_percent, check_input_size, prepare_inputs, train_model
from .results import ResultsStore
from .splits import stratified_subsets
from .table import build_table

__all__ = ["select_best_lr", "finetune_pair", "run_benchmark", "default_model_factory",
           "default_dataset_getter"]

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


def finetune_pair(model_name: str, dataset_name: str, config: FinetuneConfig, *,
                  model_factory: ModelFactory = default_model_factory,
                  dataset_getter: DatasetGetter = default_dataset_getter,
                  progress: bool = True) -> dict:
    """Fine-tune ``model_name`` on ``dataset_name`` over the lr grid and return the run's record.

    Record keys: ``model, dataset, num_classes, n_train, n_val, n_test, seed, best_lr, val_acc,
    test_acc`` (percent, of the best-val lr), ``input_size`` ([h, w] after the resize),
    ``per_lr`` (list of ``{lr, val_acc, test_acc, train_loss: [per epoch], seconds}``), ``seconds``.
    """
    t0 = time.perf_counter()
    where = f"{model_name} on {dataset_name}"
    train_ds = dataset_getter(dataset_name, split="train")
    test_ds = dataset_getter(dataset_name, split="test")
    y_train_all = _targets(train_ds, f"{dataset_name} (train split)")
    y_test_all = _targets(test_ds, f"{dataset_name} (test split)")
    num_classes = len(train_ds.classes)
    if len(test_ds.classes) != num_classes:
        raise ValueError(f"{dataset_name}: train split has {num_classes} classes, test split {len(test_ds.classes)}")
    tr_idx, va_idx = stratified_subsets(y_train_all, (config.n_train_per_class, config.n_val_per_class),
                                        config.seed, name=f"{dataset_name} (train split)")
    (te_idx,) = stratified_subsets(y_test_all, (config.n_test_per_class,), config.seed,
                                   name=f"{dataset_name} (test split)")

    tensors = None
    per_lr = []
    for lr in config.lrs:
        t_lr = time.perf_counter()
        torch.manual_seed(config.seed)  # same head initialisation for every lr
        model, preprocess = model_factory(model_name, num_classes)
        if tensors is None:
            tensors = {name: prepare_inputs(ds, idx, preprocess, config.resolution, config.size_multiple,
                                            desc=f"{where}: {name}", progress=progress)
                       for name, ds, idx in (("train", train_ds, tr_idx), ("val", train_ds, va_idx),
                                             ("test", test_ds, te_idx))}
            check_input_size(model, tensors["train"][0], num_classes, name=model_name)
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = tensors["train"], tensors["val"], tensors["test"]
        losses = train_model(model, x_tr, y_tr, lr=lr, epochs=config.epochs, batch_size=config.batch_size,
                             optimizer=config.optimizer, weight_decay=config.weight_decay,
                             warmup_fraction=config.warmup_fraction,
                             label_smoothing=config.label_smoothing,
                             freeze_bn_stats=config.freeze_bn_stats,
                             generator=torch.Generator().manual_seed(config.seed),
                             progress=progress, desc=f"{where} lr={lr:g}")
        per_lr.append({"lr": lr,
                       "val_acc": accuracy_percent(model, x_va, y_va, config.batch_size),
                       "test_acc": accuracy_percent(model, x_te, y_te, config.batch_size),
                       "train_loss": [round(v, 5) for v in losses],
                       "seconds": round(time.perf_counter() - t_lr, 2)})
        del model
    best_lr = select_best_lr({r["lr"]: r["val_acc"] for r in per_lr})
    best = next(r for r in per_lr if r["lr"] == best_lr)
    return {"model": model_name, "dataset": dataset_name, "num_classes": num_classes,
            "n_train": int(tr_idx.size), "n_val": int(va_idx.size), "n_test": int(te_idx.size),
            "seed": config.seed, "input_size": list(tensors["train"][0].shape[2:]),
            "best_lr": best_lr, "val_acc": best["val_acc"], "test_acc": best["test_acc"],
            "per_lr": per_lr, "seconds": round(time.perf_counter() - t0, 2)}


def run_benchmark(models: Sequence[str], datasets: Sequence[str], config: FinetuneConfig,
                  output_path: str | Path, partial_path: str | Path, *,
                  model_factory: ModelFactory = default_model_factory,
                  dataset_getter: DatasetGetter = default_dataset_getter,
                  progress: bool = True, about: Optional[str] = None) -> dict:
    """Fine-tune every model on every dataset, resumably, and write the ground-truth table.

    Each finished (model, dataset) record is written atomically to ``partial_path`` at once; a
    re-run with the same ``config`` skips the finished pairs (a different ``config`` is refused
    by :class:`~finetuning.results.ResultsStore`). When every pair is done the table
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
    store = ResultsStore(partial_path, config)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        pairs = [(m, d) for d in datasets for m in models]
        bar = tqdm(pairs, desc="fine-tune", unit="run", disable=not progress)
        for m, d in bar:
            bar.set_postfix_str(f"{m} / {d}")
            if store.has(m, d):
                continue
            store.put(finetune_pair(m, d, config, model_factory=model_factory,
                                    dataset_getter=dataset_getter, progress=progress))
    finally:
        torch.set_num_threads(previous_threads)
    table = build_table({(m, d): store.get(m, d) for m, d in pairs}, config, about=about)
    atomic_save_json(output_path, table)
    return table
