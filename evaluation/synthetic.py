"""Synthetic feature caches with a known model ranking (tests, benchmark, demos).

Generative model, per dataset (N samples, C classes, latent width L) and model m of width D_m with
quality q_m in [0, 1]::

    y_i        ~ balanced over C classes                                     labels (N,)
    z_c        ~ N(0, I_L)                                                   class centres (C, L)
    X_m        = q_m * Z[y] P_m + (1 - q_m) * G_m S,  P_m ~ N(0, 1/L), G_m ~ N(0, 1)   features (N, D_m)
    S          = diag(s_j),  s_j ∝ j^-a,  mean_j s_j^2 = 1                       noise spectrum
    probs_m    = softmax(X_m W_m / sqrt(D_m)),  W_m ~ N(0, 1)                source head (N, Cs)
    T_k        = Z R_k + 0.1 * noise,  R_k ~ N(0, 1/L)                       class-name embeddings (C, E_k)

So the class signal in X_m grows with q_m, and every metric that measures how well features predict
the labels (or the label embeddings, which are linear in the class centres) should rank models by q_m.
``noise_decay`` is the exponent ``a`` of the noise spectrum: 0 (default) is white noise (every
direction of the feature space equally noisy); real network features have a decaying spectrum (the
offline models of this project keep 80% of their variance in 2-6% of their dimensions), which
``a ~ 0.5`` imitates while keeping the total noise variance (``D``) unchanged.
With ``captions=True`` the per-sample caption embeddings ``T_k[y] + 0.3 * noise`` (N, E_k) are
written instead of labels / class tables / source heads. Everything is drawn from one
``numpy.random.default_rng(random_state)`` stream per (dataset, array), so the caches are reproducible.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterable, Mapping, Tuple

import numpy as np

from data.cache import CacheLayout, atomic_save_npy

__all__ = ["write_synthetic_caches"]

LATENT_DIM = 32


def _rng(random_state: int, *keys: str) -> np.random.Generator:
    # a stable per-array stream: the same (random_state, keys) always give the same array
    digest = hashlib.sha256("/".join(keys).encode()).digest()
    return np.random.default_rng([int(random_state), int.from_bytes(digest[:8], "little")])


def _softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def write_synthetic_caches(root: str | os.PathLike, *, datasets: Mapping[str, Tuple[int, int]],
                           models: Mapping[str, int], quality: Mapping[str, float], encoders: Mapping[str, int],
                           source_classes: int = 1000, no_head: Iterable[str] = (), captions: bool = False,
                           noise_decay: float = 0.0, random_state: int = 0) -> CacheLayout:
    """Write synthetic caches under ``root`` (the :class:`data.cache.CacheLayout` layout).

    datasets : name -> (N samples, C classes).   models : name -> feature width D.
    quality : model -> q in [0, 1] (higher = more class signal).   encoders : name -> embedding width E.
    source_classes : width Cs of the source heads.   no_head : models without a source head (no file).
    captions : write per-sample caption embeddings instead of labels / class tables / source heads.
    noise_decay : exponent a >= 0 of the noise spectrum ``s_j ∝ j^-a`` (0 = white noise).
    """
    missing = set(models) - set(quality)
    if missing:
        raise ValueError(f"no quality given for model(s) {sorted(missing)}")
    bad = {m: q for m, q in quality.items() if not 0.0 <= q <= 1.0}
    if bad:
        raise ValueError(f"quality must lie in [0, 1]; got {bad}")
    for name, (n, c) in datasets.items():
        if c < 2 or n < c:
            raise ValueError(f"dataset {name!r}: need C >= 2 classes and N >= C samples, got N={n}, C={c}")
    if not (np.isfinite(noise_decay) and noise_decay >= 0):
        raise ValueError(f"noise_decay must be a finite number >= 0, got {noise_decay!r}")
    no_head = set(no_head)
    layout = CacheLayout(root)
    for dataset, (n, c) in datasets.items():
        labels = np.arange(n) % c
        _rng(random_state, dataset, "perm").shuffle(labels)
        centres = _rng(random_state, dataset, "centres").standard_normal((c, LATENT_DIM))
        tables = {}
        for enc, e in encoders.items():
            rng = _rng(random_state, dataset, "enc", enc)
            proj = rng.standard_normal((LATENT_DIM, e)) / np.sqrt(LATENT_DIM)
            tables[enc] = centres @ proj + 0.1 * rng.standard_normal((c, e))
        if captions:
            for enc, table in tables.items():
                noise = _rng(random_state, dataset, "cap", enc).standard_normal((n, table.shape[1]))
                atomic_save_npy(layout.caption_embedding(dataset, enc), (table[labels] + 0.3 * noise).astype(np.float32))
        else:
            atomic_save_npy(layout.labels(dataset), labels.astype(np.int64))
            for enc, table in tables.items():
                atomic_save_npy(layout.label_embedding(dataset, enc), table.astype(np.float32))
        for model, d in models.items():
            rng = _rng(random_state, dataset, "model", model)
            q = float(quality[model])
            proj = rng.standard_normal((LATENT_DIM, d)) / np.sqrt(LATENT_DIM)
            spectrum = np.arange(1, d + 1, dtype=np.float64) ** -float(noise_decay)
            spectrum /= np.sqrt(np.mean(spectrum ** 2))
            feats = q * (centres[labels] @ proj) + (1.0 - q) * rng.standard_normal((n, d)) * spectrum
            atomic_save_npy(layout.features(dataset, model), feats.astype(np.float32))
            if not captions and model not in no_head:
                head = rng.standard_normal((d, source_classes)) / np.sqrt(d)
                atomic_save_npy(layout.source_probs(dataset, model), _softmax(4.0 * feats @ head).astype(np.float32))
    return layout
