"""Shared helpers for the metrics tests (synthetic data with known structure; no tests here)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_metrics.py"


def load_benchmark_module():
    """Import benchmarks/bench_metrics.py (its REFERENCE loops are tested here, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_metrics", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_task(n=300, d=16, c=4, e=6, k=3, signal=3.0, seed=0):
    """Informative features, pure-noise features, labels, label embeddings, source probs."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % c)
    X = rng.standard_normal((n, d))
    X[:, :c] += signal * np.eye(c)[y]
    noise = rng.standard_normal((n, d))
    class_emb = rng.standard_normal((c, e, k))
    Y = class_emb[y] + 0.3 * rng.standard_normal((n, e, k))
    logits = rng.standard_normal((n, 12))
    logits[:, :c] += 2.0 * np.eye(c)[y]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return dict(features=X, noise=noise, labels=y, label_embeddings=Y, source_probs=P)
