"""Wall time of the metrics' torch backend against the numpy backend, side by side, in one run.

For each of LogME, EMMS (the registry's ``emms``: Ledoit-Wolf ridge; and ``emms_evidence``),
TransRate, H-score, LEEP and NCE: one call ``fn(inputs)`` on fresh arrays (validation, Gram matrices,
eigendecompositions included) with ``backend="numpy"``, then ``backend="torch"`` on every device
present (CPU always, CUDA when ``torch.cuda.is_available()``, float64), the ratio numpy / torch and the
largest relative difference of the scores. The last row ("all, shared") scores one model with
all of them on one prepared feature object, as the evaluation runner does. CUDA is warmed up on a
small input first (context, cuBLAS / cuSOLVER handles), so its rows time the computation.

Synthetic class-structured data (``bench_metrics.make_data``: float32 features, per-sample class
label embeddings) plus softmax source outputs over ``CS`` source classes. Usage::

    python benchmarks/bench_torch_backend.py                 # reduced size: N=5000 D=1024 C=100 E=256 K=3
    python benchmarks/bench_torch_backend.py --size full     # the issue's N=50000 D=2048 C=100 E=1024 K=3
    python benchmarks/bench_torch_backend.py --size both --devices cpu   # leave out CUDA
"""
from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch

import metrics
from bench_metrics import make_data, timed

# ---------------------------------------------------------------- configuration
SIZES = {
    "full": dict(n=50_000, d=2048, c=100, e=1024, k=3),
    "reduced": dict(n=5_000, d=1024, c=100, e=256, k=3),
}
SOURCE_CLASSES = 1000
METRIC_NAMES = ["logme", "emms", "emms_evidence", "transrate", "hscore", "leep", "nce"]
SEED = 0
#: the row scoring one model with every metric on one prepared feature object
SHARED = "all, shared"


def source_probs(y: np.ndarray, n_source: int, seed: int = SEED) -> np.ndarray:
    """Softmax outputs (N, n_source) loosely tied to the labels (float32)."""
    rng = np.random.default_rng(seed + 1)
    logits = rng.standard_normal((y.shape[0], n_source), dtype=np.float32)
    logits[np.arange(y.shape[0]), y % n_source] += 4.0
    logits -= logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    P /= P.sum(axis=1, keepdims=True)
    return P


def devices(requested: list[str] | None) -> list[str]:
    found = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return found if requested is None else [d for d in requested if d in found]


def describe(devs: list[str]) -> str:
    lines = [f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), numpy {np.__version__}"]
    for d in devs:
        if d == "cuda":
            lines.append(f"cuda: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)")
    if "cuda" not in devs:
        lines.append("cuda: not available (CPU torch only)" if not torch.cuda.is_available() else "cuda: left out")
    return "\n".join(lines)


def warm_up(device: str) -> None:
    """One small call of every metric on ``device`` (CUDA context, library handles, kernels)."""
    X, y, Y = make_data(300, 32, 5, 8, 2)
    inputs = dict(features=X, labels=y, label_embeddings=Y, source_probs=source_probs(y, 10))
    for name in METRIC_NAMES:
        fn = metrics.get_metric(name)
        fn(**{k: inputs[k] for k in fn.requires}, backend="torch", device=device)


def run(size: str, devs: list[str]) -> list[dict]:
    cfg = SIZES[size]
    X, y, Y = make_data(**cfg)
    inputs = dict(features=X, labels=y, label_embeddings=Y, source_probs=source_probs(y, SOURCE_CLASSES))
    sizes = "N={n} D={d} C={c} E={e} K={k}".format(**cfg)
    rows = []

    def one(name, **backend):
        fn = metrics.get_metric(name)
        return timed(fn, **{k: inputs[k] for k in fn.requires}, **backend)

    def shared(**backend):
        F = metrics.prepare_features(X)
        P = metrics.prepare_label_embeddings(Y)
        out = {}
        for name in METRIC_NAMES:
            fn = metrics.get_metric(name)
            kw = {k: dict(inputs, features=F, label_embeddings=P)[k] for k in fn.requires}
            out[name] = fn(**kw, **backend)
        return out

    for name in METRIC_NAMES + [SHARED]:
        call = (lambda **b: one(name, **b)) if name in METRIC_NAMES else (lambda **b: timed(shared, **b))
        ref, wall, _ = call()
        row = dict(metric=name, sizes=sizes, numpy=wall, diff=0.0)
        for d in devs:
            got, row[d], _ = call(backend="torch", device=d)
            row["diff"] = max(row["diff"], rel_diff(got, ref))
        rows.append(row)
        print_rows([row], devs, header=len(rows) == 1)
    return rows


def rel_diff(got, ref) -> float:
    """Largest ``|got - ref| / max(1, |ref|)`` (over the metrics if dicts)."""
    if isinstance(ref, dict):
        return max(rel_diff(got[m], ref[m]) for m in ref)
    return abs(got - ref) / max(1.0, abs(ref))


def print_rows(rows: list[dict], devs: list[str], *, header: bool) -> None:
    if header:
        cols = f"{'metric':<18} {'sizes':<34} {'numpy s':>9}" + "".join(
            f" {'torch-' + d + ' s':>13} {'ratio':>7}" for d in devs) + f" {'max rel diff':>13}"
        print(cols)
        print("-" * len(cols))
    for r in rows:
        line = f"{r['metric']:<18} {r['sizes']:<34} {r['numpy']:>9.3f}"
        for d in devs:
            line += f" {r[d]:>13.3f} {r['numpy'] / r[d]:>6.1f}x"
        print(line + f" {r['diff']:>13.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=[*SIZES, "both"], default="reduced")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                        help="torch devices to time (default: cpu, and cuda when available)")
    args = parser.parse_args()
    devs = devices(args.devices)
    print(describe(devs))
    print("ratio = numpy seconds / torch seconds (> 1: torch faster); each call on fresh arrays, float64\n")
    for d in devs:
        warm_up(d)
    for size in (list(SIZES)[::-1] if args.size == "both" else [args.size]):
        run(size, devs)
        print()


if __name__ == "__main__":
    main()
