"""N << D: the D x D (old) against the N x N (new) computation of the metrics that form Gram matrices.

For every shape and metric, scores the same random features twice from a plain array -- once with
``prepare_features(X, side="primal")`` (the D x D Gram matrices and eigendecompositions every
metric used before) and once with the automatic side (N x N when N <= D) -- and prints wall time,
peak traced memory (``tracemalloc``; numpy's allocations are traced) and the relative difference of
the two scores. Single-threaded BLAS (as the metrics' eigensolver, ``metrics._linalg.EIGH_THREADS``).

    .venv/bin/python benchmarks/bench_small_n.py
    .venv/bin/python benchmarks/bench_small_n.py --shapes 20x5000 --metrics hscore emms
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = ("20x5000", "50x2048", "100x1280", "2000x256")     # N x D; the last one N > D: both sides equal
METRICS = ("hscore", "hscore_reg", "parc", "emms", "emms_evidence")
N_CLASSES = 4
EMBED_DIM = 384
N_EMBEDDINGS = 3
SEED = 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), help="N x D")
    p.add_argument("--metrics", nargs="+", default=list(METRICS))
    return p.parse_args(argv)


def _task(n: int, d: int):
    import numpy as np
    rng = np.random.default_rng(SEED)
    y = np.arange(n) % N_CLASSES
    X = rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0, d) + 2.0
    X[:, :N_CLASSES] += 2.0 * np.eye(N_CLASSES)[y]
    Y = rng.standard_normal((N_CLASSES, EMBED_DIM, N_EMBEDDINGS))[y]
    return {"features": X, "labels": y, "label_embeddings": Y}


def _run(fn, inputs, side):
    import metrics
    args = {k: inputs[k] for k in fn.requires}
    tracemalloc.start()
    t0 = time.perf_counter()
    args["features"] = metrics.prepare_features(args["features"], side=side)
    score = fn(**args)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return score, seconds, peak / 2 ** 20


def main(argv=None) -> int:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits
    import metrics

    fns = {name: metrics.get_metric(name) for name in args.metrics}     # KeyError lists the names
    header = (f"{'metric':<14} {'N x D':>10} | {'D side s':>9} {'N side s':>9} {'speed-up':>9} | "
              f"{'D side MB':>10} {'N side MB':>10} {'mem ratio':>9} | {'rel diff':>8}")
    print(header)
    print("-" * len(header))
    with threadpool_limits(limits=1, user_api="blas"):
        for shape in args.shapes:
            n, d = (int(v) for v in shape.lower().split("x"))
            inputs = _task(n, d)
            for name, fn in fns.items():
                old, t_old, m_old = _run(fn, inputs, "primal")
                new, t_new, m_new = _run(fn, inputs, None)
                rel = abs(new - old) / max(abs(old), 1e-300)
                print(f"{name:<14} {shape:>10} | {t_old:9.3f} {t_new:9.3f} {t_old / t_new:8.1f}x | "
                      f"{m_old:10.1f} {m_new:10.1f} {m_old / m_new:8.1f}x | {rel:8.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
