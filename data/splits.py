"""Deterministic index selection: per-class subsampling and stratified train/test splits.

Both functions work on integer class labels only (never on images), return sorted ``int64`` index
arrays and never modify their input, so the same call always selects the same samples.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["as_targets", "subsample_per_class", "stratified_split"]


def as_targets(dataset_or_targets) -> np.ndarray:
    """Return a 1-D int64 copy of the labels of a dataset (its ``.targets``) or of a label sequence."""
    raw = getattr(dataset_or_targets, "targets", dataset_or_targets)
    if raw is None:
        raise ValueError("the dataset has no class labels (.targets is None)")
    targets = np.asarray(raw)
    if targets.ndim != 1:
        raise ValueError(f"targets must be 1-D, got shape {targets.shape}")
    if targets.size and not np.issubdtype(targets.dtype, np.integer):
        if not np.all(np.equal(np.mod(targets, 1), 0)):
            raise ValueError("targets must be integer class labels")
    return targets.astype(np.int64, copy=True)


def subsample_per_class(dataset_or_targets, n_per_class: int, random_state: int = 0) -> np.ndarray:
    """Indices of at most ``n_per_class`` samples of every class, chosen at random with a fixed seed.

    Parameters
    ----------
    dataset_or_targets : a dataset with ``.targets`` or a 1-D sequence of N integer labels.
    n_per_class : positive int; classes with fewer samples keep all of theirs.
    random_state : seed of ``np.random.default_rng``; the same seed gives the same indices.

    Returns
    -------
    (M,) int64 array of sorted indices into the dataset, ``M = sum_c min(n_c, n_per_class)``.
    Classes are visited in increasing label order, so the result does not depend on sample order
    beyond the labels themselves.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    targets = as_targets(dataset_or_targets)
    rng = np.random.default_rng(random_state)
    chosen = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        if members.size > n_per_class:
            members = rng.choice(members, size=int(n_per_class), replace=False)
        chosen.append(members)
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_split(targets, test_fraction: float, random_state: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Split N samples into disjoint train/test index sets, keeping class proportions.

    For every class c with n_c samples, ``round(test_fraction * n_c)`` of them (at least one when
    n_c >= 2) go to the test set, drawn with ``np.random.default_rng(random_state)``.

    Returns ``(train_idx, test_idx)``: sorted int64 arrays whose union is ``arange(N)``.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    targets = as_targets(targets)
    rng = np.random.default_rng(random_state)
    test = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        n_test = int(round(test_fraction * members.size))
        if members.size >= 2:
            n_test = min(max(n_test, 1), members.size - 1)
        test.append(rng.choice(members, size=n_test, replace=False))
    test_idx = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, dtype=np.int64)
    mask = np.ones(targets.size, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx
