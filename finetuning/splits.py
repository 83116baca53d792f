"""Stratified, seeded, disjoint per-class subsets of a labelled split."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

__all__ = ["stratified_subsets"]


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
