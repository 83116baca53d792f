"""Measured cost of the protocol: seconds per training run per model, projected to the whole table.

:func:`time_run` builds the trainable network, prepares ``n_images`` random inputs of the model's
protocol input size (:func:`finetuning.protocol.protocol_input_size`), times one training epoch
over them (``config.batch_size`` batches, the protocol's optimiser) and one evaluation pass, and
projects one full run of the protocol on a dataset with ``num_classes`` classes::

    run_s = build_s + epochs * C * n_train * train_s_per_img + C * (n_val + n_test) * eval_s_per_img

:func:`project_table` multiplies by the runs of one (model, dataset) cell:
``len(lrs) + extensions + (n_seeds - 1)`` (``extensions`` = expected grid extensions, stated).
"""
from __future__ import annotations

import time
from typing import Mapping

import torch

from .config import FinetuneConfig
from .engine import predict, train_model
from .protocol import _native_hw, protocol_input_size
from .runner import ModelFactory, default_model_factory

__all__ = ["time_run", "project_table"]


def time_run(model_name: str, config: FinetuneConfig, *, num_classes: int = 10, n_images: int = 64,
             n_train: int | None = None, n_eval: int | None = None,
             model_factory: ModelFactory = default_model_factory) -> dict:
    """Time one epoch + one evaluation pass of ``model_name`` on random protocol-size inputs.

    ``n_train`` / ``n_eval``: images per class of a full run (default: the config's train size and
    val + test sizes). Returns ``{model, input_size, build_s, train_s_per_img, eval_s_per_img,
    run_s}`` (``run_s``: the projected seconds of one full training run, module docstring).
    """
    n_train = config.n_train_per_class if n_train is None else n_train
    n_eval = config.n_val_per_class + config.n_test_per_class if n_eval is None else n_eval
    previous = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        t0 = time.perf_counter()
        torch.manual_seed(config.seed)
        model, preprocess = model_factory(model_name, num_classes)
        build_s = time.perf_counter() - t0
        hw = protocol_input_size(_native_hw(preprocess), config)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n_images, 3, *hw, generator=g)
        y = torch.randint(0, num_classes, (n_images,), generator=g)
        t0 = time.perf_counter()
        train_model(model, x, y, lr=min(config.lrs), epochs=1, batch_size=config.batch_size,
                    optimizer=config.optimizer, weight_decay=config.weight_decay)
        train_s = (time.perf_counter() - t0) / n_images
        t0 = time.perf_counter()
        predict(model, x, batch_size=config.batch_size)
        eval_s = (time.perf_counter() - t0) / n_images
    finally:
        torch.set_num_threads(previous)
    run_s = build_s + config.epochs * num_classes * n_train * train_s + num_classes * n_eval * eval_s
    return {"model": model_name, "input_size": list(hw), "build_s": round(build_s, 2),
            "train_s_per_img": round(train_s, 4), "eval_s_per_img": round(eval_s, 4), "run_s": round(run_s, 1)}


def project_table(run_seconds: Mapping[str, float], datasets: Mapping[str, int], config: FinetuneConfig, *,
                  extensions: float = 1.0) -> dict:
    """Projected seconds of the whole table.

    ``run_seconds``: model -> seconds of one full run on a 10-class dataset (:func:`time_run`);
    ``datasets``: dataset -> its number of classes (a run scales with the images, i.e. classes).
    Returns ``{"runs_per_cell", "per_model_s": {model: s}, "total_s"}``.
    """
    runs_per_cell = len(config.lrs) + extensions + (config.n_seeds - 1)
    per_model = {m: round(s * runs_per_cell * sum(k / 10 for k in datasets.values()), 0)
                 for m, s in run_seconds.items()}
    return {"runs_per_cell": runs_per_cell, "per_model_s": per_model, "total_s": round(sum(per_model.values()), 0)}

