"""Training and evaluation primitives: input tensors, optimiser registry, schedule, loops.

Everything works on in-memory tensors: the protocol's subsets are small (tens of images per class),
so each image is preprocessed once per (model, dataset) and every learning rate of the grid reuses
the same ``(N, C, H, W)`` tensor.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common import Registry


__all__ = [
    "OPTIMIZERS",
    "register_optimizer",
    "reduced_size",
    "ReducedResolution",
    "prepare_inputs",
    "build_optimizer",
    "warmup_cosine_lambda",
    "check_input_size",
    "use_channels_last",
    "memory_format_of",
    "train_model",
    "run_epochs",
    "predict",
    "accuracy_percent",
    "freeze_norm_stats",
    "PRECISIONS",
    "check_precision",
]

OptimizerFactory = Callable[[List[dict], float], torch.optim.Optimizer]

#: name -> factory(param_groups, lr) -> optimiser. Weight decay is set per parameter group.
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")

#: decorator registering an optimiser factory ``f(param_groups, lr)`` under a name
register_optimizer = OPTIMIZERS.register


#: training-step arithmetic -> the autocast dtype of the forward pass (``None``: plain float32).
#: ``"bf16"``: the forward pass of every training step runs under ``torch.autocast(dtype=bfloat16)``
#: (matrix products and convolutions in bfloat16 with float32 accumulation; softmax, norms and the
#: loss stay float32); weights, gradients and optimiser state stay float32 and evaluation
#: (:func:`predict`) is float32. An execution choice like the thread count, not part of the protocol:
#: ``docs/finetune.md`` (Precision) gives its measured speed and its agreement with float32.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def check_precision(precision: str) -> str:
    """``precision`` if it is a key of :data:`PRECISIONS`, else a ``ValueError`` listing them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; available: {sorted(PRECISIONS)}")
    return precision


@register_optimizer("adamw")
def _adamw(groups: List[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


@register_optimizer("sgd")
def _sgd(groups: List[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def reduced_size(height: int, width: int, resolution: Optional[int], multiple: int = 1) -> Tuple[int, int]:
    """Size ``(h, w)`` of an ``height x width`` input after the reduced-resolution resize.

    The shorter side becomes ``resolution`` and the longer one keeps the aspect ratio; both are
    rounded to a multiple of ``multiple`` (at least ``multiple``). Inputs whose shorter side is
    already <= ``resolution`` (e.g. the 48-px-high OCR inputs) and ``resolution=None`` keep the
    native size: the resize only ever shrinks.
    """
    if height < 1 or width < 1:
        raise ValueError(f"input size must be positive, got {height}x{width}")
    if resolution is None or min(height, width) <= resolution:
        return int(height), int(width)
    scale = resolution / min(height, width)

    def snap(side: int) -> int:
        return max(multiple, int(round(side * scale / multiple)) * multiple)

    return snap(height), snap(width)


class ReducedResolution:
    """The protocol's image pipeline: ``preprocess`` (the model's own, native size + normalisation),
    then an anti-aliased bilinear shrink to :func:`reduced_size` ``(resolution, multiple)``.

    One object serves fine-tuning (:func:`prepare_inputs`) and the metrics' feature extraction
    (:func:`finetuning.protocol.extraction_preprocess`), so both see the same tensors. The
    per-channel affine normalisation commutes with the resize (interpolation weights sum to one):
    this equals "resize to R px, then normalise". Picklable; its ``repr`` (the cache record's
    preprocess description) names the wrapped transform and both numbers.
    """

    def __init__(self, preprocess: Callable, resolution: Optional[int], multiple: int = 1):
        if not callable(preprocess):
            raise ValueError(f"preprocess must be callable, got {type(preprocess).__name__}")
        self.preprocess = preprocess
        self.resolution = resolution
        self.multiple = int(multiple)

    def __call__(self, image) -> torch.Tensor:
        x = self.preprocess(image)
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise ValueError(f"preprocess must return a CxHxW tensor, got "
                             f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        size = reduced_size(x.shape[1], x.shape[2], self.resolution, self.multiple)
        if size != tuple(x.shape[1:]):
            x = F.interpolate(x[None].float(), size=size, mode="bilinear", align_corners=False,
                              antialias=True)[0]
        return x.float()

    def __repr__(self) -> str:
        from data.fingerprint import describe

        return (f"ReducedResolution({describe(self.preprocess)}, resolution={self.resolution}, "
                f"multiple={self.multiple})")


def prepare_inputs(dataset, indices: Sequence[int], preprocess: Callable, resolution: Optional[int],
                   multiple: int = 1, *, desc: str = "preprocess",
                   progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``ReducedResolution(preprocess, resolution, multiple)(dataset[i])`` for ``i`` in ``indices``,
    stacked into one input tensor and one label tensor.

    Returns:
        ``x`` (N, C, h, w) float32 and ``y`` (N,) int64, in the order of ``indices``.
    """
    from tqdm.auto import tqdm

    pipeline = ReducedResolution(preprocess, resolution, multiple)
    xs, ys = [], []
    for i in tqdm(indices, desc=desc, unit="img", leave=False, disable=not progress):
        image, label = dataset[int(i)]
        xs.append(pipeline(image))
        ys.append(int(label))
    if not xs:
        raise ValueError(f"{desc}: no samples selected")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# optimisation
# ---------------------------------------------------------------------------------------------
def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    lr_scales: Sequence[Tuple[nn.Module, float]] = ()) -> torch.optim.Optimizer:
    """Optimiser ``name`` over every trainable parameter of ``model``.

    Two parameter groups: weights (``ndim >= 2``: convolution kernels, linear matrices, embeddings)
    get ``weight_decay``; biases and normalisation scales/shifts (``ndim <= 1``) get none.
    ``lr_scales``: ``(submodule, factor)`` pairs; the parameters of each submodule get their own
    two groups at ``factor * lr`` (e.g. a new head trained faster than a pre-trained backbone).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; available: {sorted(OPTIMIZERS)}")
    scale_of = {}
    for sub, factor in lr_scales:
        if not float(factor) > 0:
            raise ValueError(f"lr scale factors must be positive, got {factor!r}")
        for p in sub.parameters():
            scale_of[id(p)] = float(factor)
    groups: dict = {}
    for p in model.parameters():
        if p.requires_grad:
            factor, decay = scale_of.get(id(p), 1.0), p.ndim >= 2
            groups.setdefault((factor, decay), []).append(p)
    if not groups:
        raise ValueError("model has no trainable parameters")
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1]))
    return OPTIMIZERS[name]([{"params": ps, "weight_decay": weight_decay if decay else 0.0,
                              **({} if factor == 1.0 else {"lr": lr * factor})}
                             for (factor, decay), ps in ordered], lr)


def warmup_cosine_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier at step t: ``(t+1)/W`` for ``t < W``, then ``0.5 (1 + cos(pi (t-W)/(T-W)))``."""
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def num_batches(n: int, batch_size: int, drop_single: bool = True) -> int:
    """Batches (optimiser steps) per epoch of :func:`run_epochs`: ``ceil(n / batch_size)``, minus a trailing batch of one sample (batch norm
    cannot normalise a single sample) when there is more than one batch."""
    k = -(-n // batch_size)
    return k - 1 if drop_single and k > 1 and n % batch_size == 1 else k


def _batches(n: int, batch_size: int, generator: torch.Generator, *, drop_single: bool = True) -> List[torch.Tensor]:
    """Shuffled index batches of one epoch: one ``randperm`` of ``generator`` cut into runs of
    ``batch_size``; ``drop_single`` drops a trailing batch of one (see :func:`num_batches`)."""
    order = torch.randperm(n, generator=generator)
    return [order[s * batch_size:(s + 1) * batch_size] for s in range(num_batches(n, batch_size, drop_single))]


def run_epochs(n: int, batch_loss: Callable[[torch.Tensor], torch.Tensor],
               opt: torch.optim.Optimizer, sched, *, epochs: int, batch_size: int,
               generator: torch.Generator, lr: float, drop_single: bool = True, progress: bool = False,
               desc: str = "train") -> List[float]:
    """The mini-batch loop every trainer here shares; returns the mean training loss per epoch.

    Each epoch shuffles ``range(n)`` with ``generator`` (:func:`_batches`); for every index batch
    ``b``: ``loss = batch_loss(b)`` (a scalar tensor), a ``FloatingPointError`` naming ``lr`` when
    it is not finite, then zero-grad, backward, ``opt.step()``, ``sched.step()`` (per step). The
    caller builds the optimiser and schedule and puts the network in training mode."""
    from tqdm.auto import tqdm

    losses: List[float] = []
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", leave=False, disable=not progress):
        total_loss, seen = 0.0, 0
        for b in _batches(n, batch_size, generator, drop_single=drop_single):
            loss = batch_loss(b)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at lr={lr}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(b)
            seen += len(b)
        losses.append(total_loss / seen)
    return losses


@torch.no_grad()
def check_input_size(model: nn.Module, x: torch.Tensor, num_classes: int, *, name: str = "model") -> None:
    """Run ``model`` in eval mode on the first two rows of ``x`` (N, C, H, W) and check it returns
    (2, num_classes) logits; a ``ValueError`` names the model and the input size otherwise (e.g. a
    network whose pooling cannot shrink an input that small)."""
    was_training = model.training
    model.eval()
    try:
        out = model(_batch(x, slice(0, 2), memory_format_of(model)))
    except RuntimeError as err:
        raise ValueError(f"{name} does not accept {tuple(x.shape[1:])} inputs ({err}); "
                         "raise the resolution or keep the native size (resolution=None)") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (min(2, x.shape[0]), num_classes):
        raise ValueError(f"{name} returned logits of shape {tuple(out.shape)} for {tuple(x[:2].shape)} "
                         f"inputs, expected ({min(2, x.shape[0])}, {num_classes})")


def freeze_norm_stats(model: nn.Module) -> None:
    """Put every batch-norm layer of ``model`` in eval mode: the pre-trained running statistics
    normalise (and are not updated); the affine scale / shift still train."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def use_channels_last(model: nn.Module) -> str:
    """Put a network with 2-D convolutions into the NHWC (``channels_last``) memory format, in place.

    Same function, other summation order: losses agree to float rounding (tested). Measured for one
    training step (batch 16, 1 thread, 2-core machine): EfficientNet-Lite0 at 112 px 1.46x faster,
    ocr_cls 1.37x, the 28 px ResNet pre-trained here 1.18x, ocr_rec 1.15x; DINOv2-S (a ViT: one
    patch convolution), ocr_det and the MLPs within 1-5 % either way. :func:`train_model` and
    :func:`predict` then hand the network its batches in the same format. Returns the format used:
    ``"channels_last"``, or ``"contiguous"`` for a network without ``nn.Conv2d`` (left as it is).
    """
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return "contiguous"
    model.to(memory_format=torch.channels_last)
    return "channels_last"


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """``torch.channels_last`` when the first 2-D convolution's kernel is stored NHWC, else
    ``torch.contiguous_format`` (also for a network without one)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            return torch.channels_last if (w.is_contiguous(memory_format=torch.channels_last)
                                           and not w.is_contiguous()) else torch.contiguous_format
    return torch.contiguous_format


def _batch(x: torch.Tensor, index, fmt: torch.memory_format) -> torch.Tensor:
    xb = x[index]
    return xb.contiguous(memory_format=fmt) if xb.ndim == 4 else xb


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float, epochs: int,
                batch_size: int, optimizer: str = "adamw", weight_decay: float = 0.0,
                warmup_fraction: float = 0.0, label_smoothing: float = 0.0,
                freeze_bn_stats: bool = False, generator: Optional[torch.Generator] = None,
                precision: str = "fp32", progress: bool = False, desc: str = "train") -> List[float]:
    """Fine-tune ``model`` in place on ``(x, y)`` and return the mean training loss of every epoch.

    Minimises the cross-entropy ``-(1/B) sum_i log softmax(f(x_i))[y_i]`` of the logits
    ``f(x)`` (B, K) with mini-batches of ``batch_size``, ``epochs`` passes, ``optimizer`` from
    :data:`OPTIMIZERS` and a per-step linear-warm-up + cosine learning-rate schedule
    (:func:`warmup_cosine_lambda`). Batch norm runs in training mode (batch statistics, running
    averages updated) unless ``freeze_bn_stats``. Batches are handed over in the network's memory
    format (:func:`memory_format_of`; see :func:`use_channels_last`). ``precision``: a key of
    :data:`PRECISIONS` (the forward pass's arithmetic; the loss is taken on float32 logits).

    Args:
        x: (N, C, H, W) inputs; y: (N,) int64 labels in ``[0, K)``.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    autocast_dtype = PRECISIONS[check_precision(precision)]
    opt = build_optimizer(model, optimizer, lr, weight_decay)
    total = num_batches(x.shape[0], batch_size) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(total, int(warmup_fraction * total)))
    model.train()
    if freeze_bn_stats:
        freeze_norm_stats(model)
    fmt = memory_format_of(model)

    def batch_loss(b: torch.Tensor) -> torch.Tensor:
        with (contextlib.nullcontext() if autocast_dtype is None
              else torch.autocast(x.device.type, dtype=autocast_dtype)):
            logits = model(_batch(x, b, fmt))
        logits = logits.float()                          # a no-op in float32
        if logits.ndim != 2 or logits.shape[0] != len(b):
            raise ValueError(f"model must return (batch, classes) logits, got shape {tuple(logits.shape)}")
        return F.cross_entropy(logits, y[b], label_smoothing=label_smoothing)

    return run_epochs(x.shape[0], batch_loss, opt, sched, epochs=epochs, batch_size=batch_size,
                      generator=generator, lr=lr, progress=progress, desc=desc)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Arg-max class of every row of ``x`` (N, C, H, W) -> (N,) int64, model in eval mode."""
    model.eval()
    fmt = memory_format_of(model)
    out = [model(_batch(x, slice(s, s + batch_size), fmt)).argmax(dim=1) for s in range(0, x.shape[0], batch_size)]
    return torch.cat(out).cpu().numpy().astype(np.int64)


def accuracy_percent(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Top-1 accuracy in percent, ``100 * mean(argmax f(x_i) == y_i)``."""
    pred = predict(model, x, batch_size)
    return float(100.0 * np.mean(pred == y.cpu().numpy()))
