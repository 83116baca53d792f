"""Stratified, seeded, disjoint per-class subsets of a labelled split."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

__all__ = ["stratified_subsets", "protocol_subsets"]


def stratified_subsets(targets: Sequence[int], sizes: Sequence[int], random_state: int,
                       *, name: str = "dataset") -> Tuple[np.ndarray, ...]:
    """Draw disjoint subsets with exactly ``sizes[k]`` samples of every class.

    Args:
        targets: (N,) integer class labels of one split (not modified).
        sizes: per-class size of each subset, e.g. ``(n_train, n_val)``.
        random_state: seed of the permutation drawn inside every class.
        name: dataset name used in error messages.

    Returns:
        One sorted int64 index array per entry of ``sizes``; subset k holds ``C * sizes[k]`` indices
        into ``targets`` (C = number of distinct labels), and the subsets do not overlap.

    Raises:
        ValueError: if ``targets`` is empty or not 1-D, a size is not positive, or a class has fewer
            than ``sum(sizes)`` samples (the message names the class and the counts).
    """
    y = np.asarray(targets)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name}: targets must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: targets must be integer labels, got dtype {y.dtype}")
    sizes = [int(s) for s in sizes]
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"{name}: subset sizes must be positive integers, got {sizes}")
    need = sum(sizes)
    rng = np.random.default_rng(random_state)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size < need:
            raise ValueError(f"{name}: class {int(c)} has {idx.size} samples, the protocol needs "
                             f"{need} per class ({' + '.join(map(str, sizes))})")
        idx = rng.permutation(idx)
        start = 0
        for k, s in enumerate(sizes):
            parts[k].append(idx[start:start + s])
            start += s
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)


def _smallest_class(y: np.ndarray, name: str) -> int:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: targets must be a non-empty 1-D integer array, got {y.dtype} {y.shape}")
    return int(np.unique(y, return_counts=True)[1].min())


def protocol_subsets(train_targets: Sequence[int], test_targets: Sequence[int], config, *,
                     name: str = "dataset") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The protocol's ``(train, val, test)`` indices: train/val into the train split, test into the test split.

    Per class: exactly ``n_train = config.n_train_per_class`` training images and
    ``n_val = min(config.n_val_per_class, m_train - n_train)`` validation images (``m_train`` = the
    smallest class of the train split; at least 1 must be left), disjoint, drawn with
    ``config.seed`` (:func:`stratified_subsets`); ``n_test = min(config.n_test_per_class, m_test)``
    test images. These training indices are the images the transferability metrics are scored on.
    """
    m_train = _smallest_class(train_targets, f"{name} (train split)")
    if m_train <= config.n_train_per_class:
        raise ValueError(f"{name} (train split): its smallest class has {m_train} images; the protocol needs "
                         f"{config.n_train_per_class} training + at least 1 validation image per class")
    n_val = min(config.n_val_per_class, m_train - config.n_train_per_class)
    n_test = min(config.n_test_per_class, _smallest_class(test_targets, f"{name} (test split)"))
    tr, va = stratified_subsets(train_targets, (config.n_train_per_class, n_val), config.seed,
                                name=f"{name} (train split)")
    (te,) = stratified_subsets(test_targets, (n_test,), config.seed, name=f"{name} (test split)")
    return tr, va, te
