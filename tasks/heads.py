"""Trained heads of the task ground truth (on frozen backbone and text-encoder outputs), and their loop.

The ground truth of the offline VQA / REC benchmarks trains, per candidate, a task head on the
candidate's FROZEN image representation and FROZEN text embedding (CPU budget: the backbones are
not updated; docs/tasks.md states this departure from full fine-tuning):

* :class:`AnswerHead` (VQA): ``a = relu(W_i img)``, ``b = relu(W_t txt)``,
  ``logits = W_2 relu(W_1 [a, b, a * b])`` over the answer vocabulary; cross-entropy.
* :class:`FiLMBoxHead` (REC): the spatial map ``M`` (C, g, g) is projected by a 1x1 conv to H
  channels and modulated by the expression (FiLM, Perez et al. 2018):
  ``h = relu(conv(M) * (1 + gamma(t)) + beta(t))``, then a 3x3 conv and a 1x1 conv give per cell
  (i, j) a score s and a box (centre ``((j + 0.5 + tanh dx) / g, (i + 0.5 + tanh dy) / g)``, size
  ``sigmoid(w), sigmoid(h)``, image-normalised); the output is the softmax(s)-weighted mean of the
  cell boxes as (x1, y1, x2, y2); loss ``L1 + GIoU``.

:func:`fit_head` trains with AdamW (``finetuning.engine.build_optimizer``), a warm-up + cosine
schedule (``finetuning.engine.warmup_cosine_lambda``) and seeded mini-batches; :func:`select_lr`
picks the learning rate by a validation score and reports the test score of that one only.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from finetuning.engine import build_optimizer, warmup_cosine_lambda

__all__ = ["AnswerHead", "FiLMBoxHead", "box_loss", "box_iou_pairs", "fit_head", "select_lr", "standardiser",
           "head_ground_truth"]


class AnswerHead(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, num_answers: int, hidden: int = 256):
        super().__init__()
        self.img = nn.Linear(image_dim, hidden)
        self.txt = nn.Linear(text_dim, hidden)
        self.mlp = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_answers))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        a, b = F.relu(self.img(image)), F.relu(self.txt(text))
        return self.mlp(torch.cat([a, b, a * b], dim=1))


class FiLMBoxHead(nn.Module):
    def __init__(self, channels: int, side: int, text_dim: int, hidden: int = 64):
        super().__init__()
        self.side = int(side)
        self.conv = nn.Conv2d(channels, hidden, 1)
        self.film = nn.Linear(text_dim, 2 * hidden)
        self.mix = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 5, 1)                     # per cell: score, dx, dy, w, h

    def forward(self, maps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(text).chunk(2, dim=1)
        h = F.relu(self.conv(maps) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        o = self.out(F.relu(self.mix(h)))                        # B x 5 x g x g
        g = o.shape[-1]
        grid = (torch.arange(g, dtype=o.dtype, device=o.device) + 0.5) / g
        cx = grid[None, None, :] + torch.tanh(o[:, 1]) / g       # B x g x g (columns = x)
        cy = grid[None, :, None] + torch.tanh(o[:, 2]) / g
        w, hgt = torch.sigmoid(o[:, 3]), torch.sigmoid(o[:, 4])
        cells = torch.stack([cx - w / 2, cy - hgt / 2, cx + w / 2, cy + hgt / 2], dim=1).flatten(2)   # B x 4 x gg
        weights = torch.softmax(o[:, 0].flatten(1), dim=1)       # B x gg
        return (cells * weights[:, None, :]).sum(dim=2)


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of row i of ``a`` with row i of ``b`` (both (N, 4) x1, y1, x2, y2)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp_min(0).prod(1)
    return inter / (area(a) + area(b) - inter).clamp_min(1e-9)


def box_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``|pred - target|_1 + (1 - GIoU)`` (torchvision's generalised IoU loss)."""
    from torchvision.ops import generalized_box_iou_loss
    return F.l1_loss(pred, target, reduction="none").sum(1).mean() + generalized_box_iou_loss(pred, target, reduction="mean")


def standardiser(train: np.ndarray) -> Callable[[np.ndarray], torch.Tensor]:
    """``x -> (x - mean) / std`` with the per-column statistics of ``train`` (maps: per channel)."""
    axes = (0,) if train.ndim == 2 else (0, 2, 3)
    mean = train.astype(np.float64).mean(axis=axes, keepdims=True)
    std = train.astype(np.float64).std(axis=axes, keepdims=True)
    std = np.where(std > 1e-8, std, 1.0)
    return lambda x: torch.from_numpy(((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32))


def fit_head(head: nn.Module, inputs: Sequence[torch.Tensor], target: torch.Tensor, loss_fn: Callable, *,
             lr: float, epochs: int, batch_size: int, weight_decay: float, seed: int) -> list:
    """Train ``head(*inputs[b])`` against ``target[b]`` in place; mean training loss per epoch."""
    n = target.shape[0]
    opt = build_optimizer(head, "adamw", lr, weight_decay)
    steps = -(-n // batch_size) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(steps, max(1, steps // 20)))
    gen = torch.Generator().manual_seed(seed)
    head.train()
    losses = []
    for _ in range(epochs):
        total = 0.0
        for b in torch.randperm(n, generator=gen).split(batch_size):
            loss = loss_fn(head(*[t[b] for t in inputs]), target[b])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at lr={lr}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        losses.append(round(total / n, 5))
    head.eval()
    return losses


def select_lr(make_head: Callable[[], nn.Module], train: Tuple, val: Tuple, test: Tuple, loss_fn: Callable,
              score_fn: Callable[[torch.Tensor, torch.Tensor], float], *, lrs: Sequence[float], epochs: int,
              batch_size: int, weight_decay: float, seed: int) -> Dict[str, object]:
    """Train one head per learning rate (same seed, same initialisation); pick the best validation
    ``score_fn(pred, target)``; return ``{best_lr, val, test, per_lr}`` (test of the best lr only)."""
    per_lr = []
    for lr in lrs:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        head = make_head()
        losses = fit_head(head, train[0], train[1], loss_fn, lr=lr, epochs=epochs, batch_size=batch_size,
                          weight_decay=weight_decay, seed=seed)
        with torch.no_grad():
            val_score = score_fn(head(*val[0]), val[1])
            test_score = score_fn(head(*test[0]), test[1])
        per_lr.append({"lr": lr, "val": round(val_score, 4), "test": round(test_score, 4),
                       "train_loss": losses[-1], "seconds": round(time.perf_counter() - t0, 2)})
    best = max(per_lr, key=lambda r: r["val"])       # ties: the first lr in the grid
    return {"best_lr": best["lr"], "val": best["val"], "test": best["test"], "per_lr": per_lr}


def head_ground_truth(candidates: Sequence[str], *, dataset: str, partial_path, protocol: dict, dataset_options: dict,
                      data_root, inputs_of: Callable, target_of: Callable, make_head: Callable, loss_fn: Callable,
                      score_fn: Callable, measure: str, log: Callable[[str], None] = print) -> Dict[str, dict]:
    """The per-candidate ground-truth loop shared by the tasks, resumable through ``partial_path``.

    Train / test splits of ``dataset``; a seeded ``val_fraction`` of the train samples is the
    validation part. Per candidate: ``inputs_of(candidate, split, ds)`` gives the per-sample
    (image representation, text embedding) arrays, both standardised with the fit rows'
    statistics; ``make_head(image, text, ds)`` builds a head; :func:`select_lr` trains it with
    ``loss_fn`` against ``target_of(ds)`` and scores it with ``score_fn``. Returns ``{candidate: record}``.
    """
    import data

    from .pipeline import GroundTruthStore

    options = {"options": dict(dataset_options)} if dataset_options else {}
    store = GroundTruthStore(partial_path, {"dataset": dataset, **options, **protocol})
    train = data.get_dataset(dataset, split="train", root=data_root, **dataset_options)
    test = data.get_dataset(dataset, split="test", root=data_root, **dataset_options)
    order = np.random.default_rng(protocol["seed"]).permutation(len(train))
    n_val = int(round(protocol["val_fraction"] * len(train)))
    val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    y_tr, y_te = target_of(train), target_of(test)
    for cand in candidates:
        if store.get(cand) is not None:
            continue
        t0 = time.perf_counter()
        i_tr, t_tr = inputs_of(cand, "train", train)
        i_te, t_te = inputs_of(cand, "test", test)
        si, st = standardiser(i_tr[fit_idx]), standardiser(t_tr[fit_idx])
        part = lambda idx: ((si(i_tr[idx]), st(t_tr[idx])), y_tr[idx])
        res = select_lr(lambda: make_head(i_tr, t_tr, train), part(fit_idx), part(val_idx),
                        ((si(i_te), st(t_te)), y_te), loss_fn, score_fn, lrs=protocol["lrs"],
                        epochs=protocol["epochs"], batch_size=protocol["batch_size"],
                        weight_decay=protocol["weight_decay"], seed=protocol["seed"])
        res.update({"n_fit": int(fit_idx.size), "n_val": int(n_val), "n_test": len(test),
                    "seconds": round(time.perf_counter() - t0, 2)})
        store.put(cand, res)
        log(f"[gt] {cand}: test {measure} {res['test']:.2f} (lr {res['best_lr']}, {res['seconds']} s)")
    return {c: store.get(c) for c in candidates}
