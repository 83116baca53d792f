"""The fine-tuning protocol as one validated, JSON-serialisable value.

Every number that changes a fine-tuned accuracy lives in :class:`FinetuneConfig`; the results file
stores ``config.to_dict()`` and a resumed run refuses to mix results measured under another protocol.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional, Tuple

__all__ = ["FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Protocol of one fine-tuning run (one pre-trained model on one target dataset).

    Full fine-tuning: every parameter of the pre-trained backbone and of a new linear head is
    trained, as in the fine-tuning ground truth of EMMS (Meng et al., NeurIPS 2023, Sec. 5) and of
    the LogME/SFDA benchmarks it follows, with a learning-rate grid searched on a validation split.

    Attributes:
        lrs: starting learning-rate grid; each value is one full training run, the winner is picked
            on the validation accuracy (ties: the first value evaluated).
        max_lr_extensions: how many times the grid may grow by one decade (``x 10`` above the
            largest value or ``/ 10`` below the smallest) while the best value sits at its edge;
            0 keeps the grid fixed. A run records ``lr_bracketed`` (best value interior or not).
        n_seeds: training seeds at the chosen learning rate: ``seed, seed + 1, ...``; the reported
            accuracy is their mean (``test_acc_seeds``, ``test_acc_std`` in the record). The seed
            changes the head initialisation and the batch order, never the subsets.
        epochs: passes over the training subset (fixed, no early stopping).
        resolution: the shorter image side in pixels after the reduced-resolution resize (the aspect
            ratio is kept; images whose shorter side is already <= ``resolution`` are left at native
            size); ``None`` keeps each model's native input size.
        size_multiple: resized sides are rounded to a multiple of this (patch size of ViTs, total
            stride of CNNs).
        n_train_per_class, n_val_per_class: per-class sizes of the training and validation subsets,
            both carved (stratified, disjoint, seeded) from the dataset's ``train`` split; every
            class must hold ``n_train_per_class`` + 1 images, and the validation size is capped at
            what the smallest class has left (:func:`finetuning.splits.protocol_subsets`).
        n_test_per_class: per-class size of the held-out subset of the ``test`` split, capped at
            the smallest test class.
        batch_size: mini-batch size; a trailing batch of one sample is dropped (batch norm needs two).
        optimizer: key of :data:`finetuning.engine.OPTIMIZERS` (``"adamw"`` or ``"sgd"``).
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD), on weights only (not biases/norms).
        warmup_fraction: fraction of the optimisation steps with a linear warm-up before the cosine
            decay.
        label_smoothing: cross-entropy label smoothing.
        freeze_bn_stats: keep batch-norm running statistics at their pre-trained values (affine
            parameters still train); ``False`` lets them adapt to the target data.
        seed: seeds the subset selection, and the head initialisation and batch order of the
            learning-rate search (the first of the ``n_seeds`` repetitions).
        num_threads: ``torch.set_num_threads`` value during the runs. On the project's 2 shared
            cores one thread is the default: with 2 threads a training step ran ~10x slower than
            with 1 whenever another process held a core (OpenMP threads wait on each other).
    """

    lrs: Tuple[float, ...] = (3e-3, 3e-4, 3e-5)
    max_lr_extensions: int = 0
    n_seeds: int = 1
    epochs: int = 5
    resolution: Optional[int] = 56
    size_multiple: int = 14
    n_train_per_class: int = 10
    n_val_per_class: int = 10
    n_test_per_class: int = 50
    batch_size: int = 16
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.0
    freeze_bn_stats: bool = False
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        lrs = tuple(float(lr) for lr in self.lrs)
        if not lrs:
            raise ValueError("lrs must contain at least one learning rate")
        if any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
            raise ValueError(f"every learning rate must be a finite positive number, got {lrs}")
        if len(set(lrs)) != len(lrs):
            raise ValueError(f"lrs contains duplicates: {lrs}")
        object.__setattr__(self, "lrs", lrs)
        if isinstance(self.max_lr_extensions, bool) or not isinstance(self.max_lr_extensions, int) \
                or self.max_lr_extensions < 0:
            raise ValueError(f"max_lr_extensions must be a non-negative integer, got {self.max_lr_extensions!r}")
        for name in ("n_seeds", "epochs", "size_multiple", "n_train_per_class", "n_val_per_class",
                     "n_test_per_class", "batch_size", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.resolution is not None and (isinstance(self.resolution, bool)
                                            or not isinstance(self.resolution, int)
                                            or self.resolution < 8):
            raise ValueError(f"resolution must be None or an integer >= 8, got {self.resolution!r}")
        if self.resolution is not None and self.resolution % self.size_multiple:
            raise ValueError(f"resolution {self.resolution} is not a multiple of size_multiple "
                             f"{self.size_multiple}")
        from .engine import OPTIMIZERS  # local import: engine imports torch

        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; available: {sorted(OPTIMIZERS)}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def seeds(self) -> Tuple[int, ...]:
        """The training seeds at the chosen learning rate: ``(seed, ..., seed + n_seeds - 1)``."""
        return tuple(range(self.seed, self.seed + self.n_seeds))

    def to_dict(self) -> dict:
        """JSON-ready dict (``lrs`` as a list)."""
        out = asdict(self)
        out["lrs"] = list(self.lrs)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error, except ``"description"`` (the prose
        a finished table adds to its protocol record, ``finetuning.table``), which is ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k != "description"}
        unknown = set(kw) - known
        if unknown:
            raise ValueError(f"unknown FinetuneConfig keys: {sorted(unknown)}")
        if "lrs" in kw:
            kw["lrs"] = tuple(kw["lrs"])
        return cls(**kw)
