"""Task heads of the VQA / REC ground truth, the fine-tuned candidate, and their training loop.

Two ground truths per task (``mode``), both resumable and both on the inputs the metrics score:

* ``"finetuned"`` (the committed table): LP-FT (Kumar et al., ICLR 2022). The head is first trained
  on the frozen features (as the yardstick below), then the candidate's image backbone
  (:mod:`tasks.trainable`, its pre-trained weights) and that head are trained END TO END on the
  task's images at the task's input resolution (``tasks.images.image_inputs``, the pipeline the
  features are extracted with), batch norm at its pre-trained statistics; the text encoder stays
  frozen (its per-sample embeddings are inputs). The backbone output is standardised with the
  per-column (maps: per-channel) mean/std of the pre-trained features of the fit rows (a fixed
  affine layer), exactly as the head-only yardstick standardises its inputs.
* ``"head"`` (a cheap second yardstick): the same head on the FROZEN cached features.

Heads:

* :class:`AnswerHead` (VQA): ``a = relu(W_i img)``, ``b = relu(W_t txt)``,
  ``logits = W_2 relu(W_1 [a, b, a * b])`` over the answer vocabulary; cross-entropy.
* :class:`FiLMBoxHead` (REC): the spatial map ``M`` (C, g, g) is projected by a 1x1 conv to H
  channels and modulated by the expression (FiLM, Perez et al. 2018):
  ``h = relu(conv(M) * (1 + gamma(t)) + beta(t))``, then a 3x3 conv and a 1x1 conv give per cell
  (i, j) a score s and a box (centre ``((j + 0.5 + tanh dx) / g, (i + 0.5 + tanh dy) / g)``, size
  ``sigmoid(w), sigmoid(h)``, image-normalised); the output is the softmax(s)-weighted mean of the
  cell boxes as (x1, y1, x2, y2); loss ``L1 + GIoU``.

:func:`fit_head` trains with AdamW (``finetuning.engine.build_optimizer``; a fine-tuned candidate's
head at ``head_lr_scale`` times the backbone's lr), a warm-up + cosine schedule
(``finetuning.engine.warmup_cosine_lambda``) and seeded mini-batches; :func:`select_lr` picks the
learning rate by a validation score and reports the test score of that one only.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import copy

from finetuning.engine import build_optimizer, freeze_norm_stats, num_batches, run_epochs, warmup_cosine_lambda

__all__ = ["AnswerHead", "FiLMBoxHead", "FinetunedCandidate", "box_loss", "box_iou_pairs", "fit_head", "select_lr",
           "standardiser", "standard_stats", "head_ground_truth", "finetuned_ground_truth", "ground_truth_runner",
           "MODES", "predict_batched"]

MODES = ("finetuned", "head")


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


class FinetunedCandidate(nn.Module):
    """``head((backbone(images) - mean) / std, text)``: a trainable backbone (:mod:`tasks.trainable`),
    a fixed standardisation (buffers ``mean`` / ``std``, float32, broadcastable to its output) and a head."""

    def __init__(self, backbone: nn.Module, head: nn.Module, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, dtype=np.float32)))

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.head((self.backbone(images) - self.mean) / self.std, text)


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


def standard_stats(train: np.ndarray) -> tuple:
    """(mean, std) float64 of ``train`` per column ((N, D) -> (1, D)) or per channel ((N, C, g, g) ->
    (1, C, 1, 1)); a constant column gets std 1."""
    axes = (0,) if train.ndim == 2 else (0, 2, 3)
    mean = train.astype(np.float64).mean(axis=axes, keepdims=True)
    std = train.astype(np.float64).std(axis=axes, keepdims=True)
    return mean, np.where(std > 1e-8, std, 1.0)


def standardiser(stats: tuple) -> Callable[[np.ndarray], torch.Tensor]:
    """``x -> (x - mean) / std`` (float32 tensor) with ``stats = (mean, std)`` of
    :func:`standard_stats` (per column; maps: per channel) of the fit rows."""
    mean, std = stats
    return lambda x: torch.from_numpy(((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32))


def fit_head(head: nn.Module, inputs: Sequence[torch.Tensor], target: torch.Tensor, loss_fn: Callable, *,
             lr: float, epochs: int, batch_size: int, weight_decay: float, seed: int,
             head_lr_scale: float = 1.0, freeze_bn_stats: bool = False, progress: bool = False,
             desc: str = "train") -> list:
    """Train ``head(*inputs[b])`` against ``target[b]`` in place; mean training loss per epoch.

    ``head`` may be a :class:`FinetunedCandidate`: its ``head`` part then trains at
    ``head_lr_scale * lr``, its backbone at ``lr``. ``freeze_bn_stats``: batch norm keeps its
    pre-trained running statistics (``finetuning.engine.freeze_norm_stats``)."""
    n = target.shape[0]
    scales = [(head.head, head_lr_scale)] if isinstance(head, FinetunedCandidate) and head_lr_scale != 1.0 else []
    opt = build_optimizer(head, "adamw", lr, weight_decay, lr_scales=scales)
    steps = num_batches(n, batch_size, drop_single=False) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(steps, min(max(1, steps // 20), steps - 1)))
    head.train()
    if freeze_bn_stats:
        freeze_norm_stats(head)
    losses = run_epochs(n, lambda b: loss_fn(head(*[t[b] for t in inputs]), target[b]), opt, sched,
                        epochs=epochs, batch_size=batch_size, generator=torch.Generator().manual_seed(seed),
                        lr=lr, drop_single=False, progress=progress, desc=desc)
    head.eval()
    return [round(v, 5) for v in losses]


@torch.no_grad()
def predict_batched(model: nn.Module, inputs: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
    """``model(*inputs)`` in eval mode, ``batch_size`` rows at a time, concatenated."""
    model.eval()
    n = inputs[0].shape[0]
    return torch.cat([model(*[t[s:s + batch_size] for t in inputs]) for s in range(0, n, batch_size)])


def select_lr(make_head: Callable[[], nn.Module], train: Tuple, val: Tuple, test: Tuple, loss_fn: Callable,
              score_fn: Callable[[torch.Tensor, torch.Tensor], float], *, lrs: Sequence[float], epochs: int,
              batch_size: int, weight_decay: float, seed: int, head_lr_scale: float = 1.0,
              freeze_bn_stats: bool = False, trials=None, keep_best: bool = False, progress: bool = False,
              desc: str = "") -> Dict[str, object]:
    """Train one head per learning rate (same seed, same initialisation); pick the best validation
    ``score_fn(pred, target)``; return ``{best_lr, val, test, per_lr}`` (test of the best lr only).

    ``trials``: an optional ``(get(lr), put(lr, record))`` pair keeping each finished lr's record
    (resume inside a candidate). ``keep_best``: also return the trained module of the best lr,
    as ``(record, module)``."""
    if keep_best and trials is not None:
        raise ValueError("keep_best needs every lr trained in this call (no resumed trials)")
    per_lr, best_model = [], None
    for lr in lrs:
        done = None if trials is None else trials[0](lr)
        if done is not None:
            per_lr.append(done)
            continue
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        head = make_head()
        losses = fit_head(head, train[0], train[1], loss_fn, lr=lr, epochs=epochs, batch_size=batch_size,
                          weight_decay=weight_decay, seed=seed, head_lr_scale=head_lr_scale,
                          freeze_bn_stats=freeze_bn_stats, progress=progress, desc=f"{desc} lr={lr:g}")
        val_score = score_fn(predict_batched(head, val[0], max(batch_size, 64)), val[1])
        test_score = score_fn(predict_batched(head, test[0], max(batch_size, 64)), test[1])
        rec = {"lr": lr, "val": round(val_score, 4), "test": round(test_score, 4),
               "train_loss": losses[-1], "seconds": round(time.perf_counter() - t0, 2)}
        if trials is not None:
            trials[1](lr, rec)
        if keep_best and (not per_lr or rec["val"] > max(r["val"] for r in per_lr)):
            best_model = head
        per_lr.append(rec)
        del head
    best = max(per_lr, key=lambda r: r["val"])       # ties: the first lr in the grid
    res = {"best_lr": best["lr"], "val": best["val"], "test": best["test"], "per_lr": per_lr}
    return (res, best_model) if keep_best else res


def _ground_truth_loop(candidates: Sequence[str], *, dataset: str, partial_path, protocol: dict, dataset_options: dict,
                       data_root, run_one: Callable, measure: str, log: Callable[[str], None]) -> Dict[str, dict]:
    """Splits of ``dataset`` (a seeded ``val_fraction`` of the train samples validates) and the
    resumable per-candidate loop: ``run_one(candidate, train, test, fit_idx, val_idx, trials)`` -> record."""
    import data

    from .pipeline import GroundTruthStore

    options = {"options": dict(dataset_options)} if dataset_options else {}
    store = GroundTruthStore(partial_path, {"dataset": dataset, **options, **protocol})
    trial_store = GroundTruthStore(Path(partial_path).with_suffix(".trials.json"),
                                   {"dataset": dataset, **options, **protocol})
    train = data.get_dataset(dataset, split="train", root=data_root, **dataset_options)
    test = data.get_dataset(dataset, split="test", root=data_root, **dataset_options)
    order = np.random.default_rng(protocol["seed"]).permutation(len(train))
    n_val = int(round(protocol["val_fraction"] * len(train)))
    val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    for cand in candidates:
        if store.get(cand) is not None:
            continue
        t0 = time.perf_counter()
        trials = (lambda lr, c=cand: trial_store.get(f"{c}|lr={lr:g}"),
                  lambda lr, rec, c=cand: trial_store.put(f"{c}|lr={lr:g}", rec))
        res = run_one(cand, train, test, fit_idx, val_idx, trials)
        res.update({"n_fit": int(fit_idx.size), "n_val": int(n_val), "n_test": len(test),
                    "seconds": round(time.perf_counter() - t0, 2)})
        store.put(cand, res)
        log(f"[gt] {cand}: test {measure} {res['test']:.2f} (lr {res['best_lr']}, {res['seconds']} s)")
    return {c: store.get(c) for c in candidates}


def _train_kwargs(protocol: dict) -> dict:
    return {"lrs": protocol["lrs"], "epochs": protocol["epochs"], "batch_size": protocol["batch_size"],
            "weight_decay": protocol["weight_decay"], "seed": protocol["seed"]}


def head_ground_truth(candidates: Sequence[str], *, dataset: str, partial_path, protocol: dict, dataset_options: dict,
                      data_root, inputs_of: Callable, target_of: Callable, make_head: Callable, loss_fn: Callable,
                      score_fn: Callable, measure: str, kind: str = "", progress: bool = False,
                      log: Callable[[str], None] = print) -> Dict[str, dict]:
    """The head-only yardstick (module docstring), resumable through ``partial_path``.

    Per candidate: ``inputs_of(candidate, split, ds)`` gives the per-sample (image representation,
    text embedding) arrays, both standardised with the fit rows' statistics; ``make_head(image,
    text, ds)`` builds a head; :func:`select_lr` trains it with ``loss_fn`` against ``target_of(ds)``
    and scores it with ``score_fn``. Returns ``{candidate: record}``.
    """
    def run_one(cand, train, test, fit_idx, val_idx, trials):
        y_tr, y_te = target_of(train), target_of(test)
        i_tr, t_tr = inputs_of(cand, "train", train)
        i_te, t_te = inputs_of(cand, "test", test)
        si, st = standardiser(standard_stats(i_tr[fit_idx])), standardiser(standard_stats(t_tr[fit_idx]))
        part = lambda idx: ((si(i_tr[idx]), st(t_tr[idx])), y_tr[idx])
        return select_lr(lambda: make_head(i_tr, t_tr, train), part(fit_idx), part(val_idx),
                         ((si(i_te), st(t_te)), y_te), loss_fn, score_fn, **_train_kwargs(protocol))

    return _ground_truth_loop(candidates, dataset=dataset, partial_path=partial_path, protocol=protocol,
                              dataset_options=dataset_options, data_root=data_root, run_one=run_one,
                              measure=measure, log=log)


def finetuned_ground_truth(candidates: Sequence[str], *, dataset: str, partial_path, protocol: dict,
                           dataset_options: dict, data_root, inputs_of: Callable, target_of: Callable,
                           make_head: Callable, loss_fn: Callable, score_fn: Callable, measure: str, kind: str,
                           progress: bool = True, log: Callable[[str], None] = print) -> Dict[str, dict]:
    """The fine-tuned ground truth (module docstring), resumable per (candidate, lr).

    LP-FT (Kumar et al., ICLR 2022): first the head alone on the frozen, standardised features
    (``protocol["probe"]``: its ``lrs`` / ``epochs`` / ``batch_size``, lr chosen on validation, as
    :func:`head_ground_truth`), then, per lr of ``protocol["lrs"]``, a copy of that head on the
    candidate's trainable backbone (``tasks.trainable.trainable_backbone(backbone, kind)``), trained
    together on the images of every sample through ``tasks.images.image_inputs`` at
    ``protocol["resolution"]`` / ``protocol["multiple"]``, batch norm at its pre-trained statistics
    when ``protocol["freeze_bn_stats"]``, the head at ``protocol["head_lr_scale"]`` times the lr.
    ``inputs_of`` gives the frozen features (probe stage, standardisation) and the frozen text
    embeddings. The record keeps the probe stage's result under ``"probe"``.
    """
    from .images import image_inputs
    from .trainable import trainable_backbone

    probe = protocol["probe"]

    def run_one(cand, train, test, fit_idx, val_idx, trials):
        backbone = cand.split("+")[0]
        y_tr, y_te = target_of(train), target_of(test)
        i_tr, t_tr = inputs_of(cand, "train", train)
        i_te, t_te = inputs_of(cand, "test", test)
        stats = standard_stats(i_tr[fit_idx])
        si, st = standardiser(stats), standardiser(standard_stats(t_tr[fit_idx]))
        frozen = lambda idx: ((si(i_tr[idx]), st(t_tr[idx])), y_tr[idx])
        lp, lp_head = select_lr(lambda: make_head(i_tr, t_tr, train), frozen(fit_idx), frozen(val_idx),
                                ((si(i_te), st(t_te)), y_te), loss_fn, score_fn, lrs=probe["lrs"],
                                epochs=probe["epochs"], batch_size=probe["batch_size"],
                                weight_decay=protocol["weight_decay"], seed=protocol["seed"], keep_best=True)
        _, preprocess = trainable_backbone(backbone, kind)
        res_mult = (protocol["resolution"], protocol["multiple"])
        x_tr = image_inputs(preprocess, train.images, *res_mult)[torch.from_numpy(train.image_index)]
        x_te = image_inputs(preprocess, test.images, *res_mult)[torch.from_numpy(test.image_index)]
        part = lambda idx: ((x_tr[idx], st(t_tr[idx])), y_tr[idx])

        def make():        # built after each lr's seeding, as the committed runs were (dropout draws)
            net, _ = trainable_backbone(backbone, kind)
            return FinetunedCandidate(net, copy.deepcopy(lp_head), *stats)

        res = select_lr(make, part(fit_idx), part(val_idx), ((x_te, st(t_te)), y_te), loss_fn, score_fn,
                        head_lr_scale=protocol["head_lr_scale"], freeze_bn_stats=protocol["freeze_bn_stats"],
                        trials=trials, progress=progress, desc=cand, **_train_kwargs(protocol))
        grid = sorted(protocol["lrs"])
        res.update({"input_size": list(x_tr.shape[2:]), "lr_bracketed": grid[0] < res["best_lr"] < grid[-1],
                    "probe": lp})
        return res

    return _ground_truth_loop(candidates, dataset=dataset, partial_path=partial_path, protocol=protocol,
                              dataset_options=dataset_options, data_root=data_root, run_one=run_one,
                              measure=measure, log=log)


def ground_truth_runner(mode: str) -> Callable:
    """:func:`finetuned_ground_truth` for ``"finetuned"``, :func:`head_ground_truth` for ``"head"``."""
    runners = {"finetuned": finetuned_ground_truth, "head": head_ground_truth}
    if mode not in runners:
        raise ValueError(f"ground-truth mode must be one of {list(runners)}, got {mode!r}")
    return runners[mode]
