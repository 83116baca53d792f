"""Measured cost of the protocol: seconds per training run per model, projected to the whole table.

:func:`time_run` builds the trainable network, prepares ``n_images`` random inputs of the model's
protocol input size (:func:`finetuning.protocol.protocol_input_size`), times one training epoch
over them (``config.batch_size`` batches, the protocol's optimiser) and one evaluation pass, and
projects one full run of the protocol on a dataset with ``num_classes`` classes::

    run_s = build_s + epochs * C * n_train * train_s_per_img + C * (n_val + n_test) * eval_s_per_img

:func:`project_table` multiplies by the runs of one (model, dataset) cell:
``len(lrs) + extensions + (n_seeds - 1)`` (``extensions`` = expected grid extensions, stated).
:func:`table_progress` says how far a partial-results file is and what is left, priced by the
finished runs' own times.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Optional, Sequence

import torch

from .config import FinetuneConfig
from .engine import predict, train_model
from .protocol import _native_hw, protocol_input_size
from .runner import ModelFactory, default_model_factory

__all__ = ["time_run", "project_table", "table_progress", "format_progress"]


def time_run(model_name: str, config: FinetuneConfig, *, num_classes: int = 10, n_images: int = 64,
             n_train: int | None = None, n_eval: int | None = None,
             model_factory: ModelFactory = default_model_factory, precision: str = "fp32") -> dict:
    """Time one epoch + one evaluation pass of ``model_name`` on random protocol-size inputs.

    ``precision``: the training steps' arithmetic (:data:`finetuning.engine.PRECISIONS`).

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
                    optimizer=config.optimizer, weight_decay=config.weight_decay, precision=precision)
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



def table_progress(doc: Mapping, models: Sequence[str], datasets: Mapping[str, int], config: FinetuneConfig, *,
                   skip: Optional[Callable[[str, str], bool]] = None, extensions: float = 1.0) -> dict:
    """How far the table of ``models`` x ``datasets`` is in a partial-results document ``doc``
    (``{"runs", "trials"}`` of :class:`finetuning.results.ResultsStore`) and what is left.

    ``datasets``: dataset -> number of classes. A cell is ``done`` (its record is in ``runs``),
    ``started`` (some of its training runs are in ``trials``) or ``todo``; ``skip(model, dataset)``
    cells are ``excluded``. What is left is priced per model by the median time of its finished
    runs scaled to 10 classes (so under the load they ran in; only the runs made by the current
    code, which record their ``precision``, when the model has any: bfloat16 and the fused graphs
    made DINOv2-S's runs 2-3x faster), for the runs a cell still lacks out
    of :func:`project_table`'s ``runs_per_cell``; models without a finished run are listed under
    ``unpriced``. Returns ``{"cells": {dataset: {model: status}}, "counts": {status: n},
    "left_s": seconds, "unpriced": [models], "run_s": {model: seconds per 10-class run}}``.
    """
    import numpy as np

    runs, trials = doc.get("runs", {}), doc.get("trials", {})
    per_run: dict = {}                 # model -> {made by the current code: [seconds per 10-class run]}
    for d, row in trials.items():
        for m, ts in row.items():
            if d in datasets:
                for t in ts.values():
                    seconds = float(t["seconds"]) * 10 / datasets[d]
                    per_run.setdefault(m, {}).setdefault("precision" in t, []).append(seconds)
    run_s = {m: float(np.median(v.get(True) or v[False])) for m, v in per_run.items()}
    runs_per_cell = len(config.lrs) + extensions + (config.n_seeds - 1)
    cells: dict = {}
    counts = {"done": 0, "started": 0, "todo": 0, "excluded": 0}
    left, unpriced = 0.0, []
    for d, k in datasets.items():
        for m in models:
            if skip is not None and skip(m, d):
                status = "excluded"
            elif m in runs.get(d, {}):
                status = "done"
            else:
                n_done = len(trials.get(d, {}).get(m, {}))
                status = "started" if n_done else "todo"
                if m in run_s:
                    left += max(runs_per_cell - n_done, 1) * run_s[m] * k / 10
                elif m not in unpriced:
                    unpriced.append(m)
            cells.setdefault(d, {})[m] = status
            counts[status] += 1
    return {"cells": cells, "counts": counts, "left_s": round(left, 0), "unpriced": unpriced, "run_s": run_s}


def format_progress(progress: Mapping) -> str:
    """A few lines for :func:`table_progress`'s result: counts per dataset, the cells not done, the cost left."""
    c = progress["counts"]
    filled = c["done"] + c["started"] + c["todo"]
    lines = [f"{c['done']} of {filled} cells done ({c['started']} started, {c['todo']} not started, "
             f"{c['excluded']} excluded)"]
    for d, row in progress["cells"].items():
        open_ = [f"{m}{' (started)' if s == 'started' else ''}" for m, s in row.items() if s in ("started", "todo")]
        done = sum(s == "done" for s in row.values())
        lines.append(f"  {d}: {done} done" + (f"; left: {', '.join(open_)}" if open_ else ""))
    lines.append(f"left: about {progress['left_s'] / 3600:.1f} h of one core at the finished runs' own speed"
                 + (f", plus the cells of {', '.join(progress['unpriced'])} (no finished run to price them)"
                    if progress["unpriced"] else ""))
    return "\n".join(lines)
