"""Speed benchmark of the metrics library against straightforward per-class-loop implementations
of the published kind (written below, clearly labelled REFERENCE).

Measured in one run, on synthetic class-structured data of realistic size:

1. LogME (classification): vectorised ``metrics.logme`` vs the published per-class loop
   (``LogME._fit_fixed_point``: truncated SVD, then one GEMV + <= 11 fixed-point steps per class).
2. LogME on label embeddings (E*K regression targets): ``metrics.logme_flabel`` vs the same loop.
3. Converged EMMS vs LogME on the same label embeddings (the paper reports EMMS ~5x faster).
4. TransRate: log-determinants on the smaller Gram side vs the naive D x D side for every class.

Prints a table (method, sizes, seconds, ratio, max abs diff). Usage::

    python benchmarks/bench_metrics.py            # full size: N=50000 D=2048 C=100 E=1024 K=3
    python benchmarks/bench_metrics.py --quick    # small sizes, a few seconds
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import metrics

# ---------------------------------------------------------------- configuration (full size)
N_SAMPLES = 50_000
FEATURE_DIM = 2048
N_CLASSES = 100
EMBED_DIM = 1024
N_EMBEDDINGS = 3
QUICK = dict(n=4000, d=256, c=20, e=64, k=3)
SEED = 0


# ---------------------------------------------------------------- REFERENCE implementations
def reference_logme_per_class(f: np.ndarray, y: np.ndarray, regression: bool = False,
                              max_targets: int | None = None) -> tuple[float, int, float]:
    """REFERENCE (published kind): LogME ``_fit_fixed_point`` of the LogME / EMMS repositories.

    Truncated SVD via the D x D Gram matrix when N > D (full SVD of X otherwise), then a Python loop
    over targets (``range(y.max() + 1)`` classes, or the columns of a regression target), each with
    its own GEMV ``u^T y`` and at most 11 fixed-point steps stopped at a 1e-3 relative change of
    alpha/beta, with the reference's +1e-5 guards and its stale ``res2``/``m2`` in the final evidence.
    Only the first ``max_targets`` targets are evaluated if given. Returns (mean evidence / N,
    number of targets evaluated, wall seconds of the shared SVD set-up before the target loop).
    """
    start = time.perf_counter()
    f = f.astype(np.float64)
    N, D = f.shape
    if N > D:
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        u_times_sigma = f @ vh.T
        k = int(np.sum(s > 1e-10))
        s = s[:k].reshape(-1, 1)
        u = u_times_sigma[:, :k] / s.reshape(1, -1)
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        s = s.reshape(-1, 1)
    sigma = s ** 2
    setup_seconds = time.perf_counter() - start
    n_targets = y.shape[1] if regression else int(y.max() + 1)
    if max_targets is not None:
        n_targets = min(n_targets, max_targets)
    evidences = []
    for i in range(n_targets):
        y_ = (y[:, i] if regression else (y == i).astype(np.float64)).reshape(-1, 1)
        x = u.T @ y_
        x2 = x ** 2
        res_x2 = (y_ ** 2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (N - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (D / 2.0 * np.log(alpha) + N / 2.0 * np.log(beta)
                    - 0.5 * np.sum(np.log(alpha + beta * sigma)) - beta / 2.0 * res2
                    - alpha / 2.0 * m2 - N / 2.0 * np.log(2 * np.pi))
        evidences.append(evidence / N)
    return float(np.mean(evidences)), n_targets, setup_seconds


def reference_transrate_naive(Z: np.ndarray, y: np.ndarray, eps: float = 1e-4) -> float:
    """REFERENCE (published kind): TransRate with every coding rate on the D x D side
    (``slogdet(I_D + Z^T Z / (n eps))``), looping over the classes present."""
    def coding_rate(A):
        n, d = A.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + A.T @ A / (n * eps))[1]

    Z = Z.astype(np.float64)
    Z = Z - Z.mean(axis=0, keepdims=True)
    classes = np.unique(y)
    return coding_rate(Z) - np.mean([coding_rate(Z[y == c]) for c in classes])


# ---------------------------------------------------------------- benchmark
def make_data(n: int, d: int, c: int, e: int, k: int, seed: int = SEED):
    """Class-structured float32 features, labels and per-sample class label embeddings (N, E, K)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % c)
    means = rng.standard_normal((c, d)).astype(np.float32)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X += 0.5 * means[y]
    class_embeddings = rng.standard_normal((c, e, k)).astype(np.float32)
    return X, y, class_embeddings[y]


def timed(fn, *args, **kwargs):
    """Return (result, wall seconds, CPU seconds of this process summed over its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def row(method, sizes, wall, cpu, ratio="1", diff=""):
    return dict(method=method, sizes=sizes, seconds=wall, cpu=cpu, ratio=ratio, diff=diff)


def run(n: int, d: int, c: int, e: int, k: int, ref_targets: int | None) -> list[dict]:
    X, y, Y = make_data(n, d, c, e, k)
    size = f"N={n} D={d} C={c}"
    esize = f"N={n} D={d} E={e} K={k}"
    rows = []

    (ref, _, _), t_ref, c_ref = timed(reference_logme_per_class, X, y)
    ours, t_ours, c_ours = timed(metrics.logme, X, y)
    rows += [row("LogME per-class loop (REFERENCE)", size, t_ref, c_ref),
             row("LogME vectorised (metrics.logme)", size, t_ours, c_ours, f"{t_ref / t_ours:.1f}x faster",
                 f"{abs(ours - ref):.1e}")]

    (ref_fl, n_done, setup), t_ref_fl, c_ref_fl = timed(reference_logme_per_class, X, Y.reshape(n, e * k), True,
                                                        ref_targets)
    note, diff_fl = "", ""
    if n_done < e * k:  # after the shared SVD the per-target loop is linear in the number of targets
        scale = (setup + (t_ref_fl - setup) * (e * k) / n_done) / t_ref_fl
        note = f" [loop timed on {n_done} of {e * k} targets, scaled]"
    else:
        scale = 1.0
    ours_fl, t_fl, c_fl = timed(metrics.logme_flabel, X, Y)
    if n_done == e * k:
        diff_fl = f"{abs(ours_fl - ref_fl):.1e}"
    t_ref_fl, c_ref_fl = t_ref_fl * scale, c_ref_fl * scale
    rows += [row("LogME F-label per-target loop (REFERENCE)" + note, esize, t_ref_fl, c_ref_fl),
             row("LogME F-label vectorised (metrics.logme_flabel)", esize, t_fl, c_fl,
                 f"{t_ref_fl / t_fl:.1f}x faster", diff_fl)]

    _, t_emms, c_emms = timed(metrics.emms, X, Y)
    _, t_one, c_one = timed(metrics.emms, X, Y, max_iter=1)
    rows += [row("EMMS converged (metrics.emms)", esize, t_emms, c_emms,
                 f"{t_fl / t_emms:.1f}x vs vectorised LogME F-label, {t_ref_fl / t_emms:.1f}x vs loop"),
             row("EMMS one-step (max_iter=1)", esize, t_one, c_one, f"{t_fl / t_one:.1f}x vs vectorised LogME F-label")]

    tr_ref, t_tr_ref, c_tr_ref = timed(reference_transrate_naive, X, y)
    tr, t_tr, c_tr = timed(metrics.transrate, X, y)
    rows += [row("TransRate D x D side (REFERENCE)", size, t_tr_ref, c_tr_ref),
             row("TransRate smaller Gram side (metrics.transrate)", size, t_tr, c_tr, f"{t_tr_ref / t_tr:.1f}x faster",
                 f"{abs(tr - tr_ref):.1e}")]
    return rows


def print_table(rows: list[dict]) -> None:
    head = ("method", "sizes", "wall s", "cpu s", "ratio (wall)", "max abs diff")
    body = [(r["method"], r["sizes"], f"{r['seconds']:.2f}", f"{r['cpu']:.2f}", r["ratio"], r["diff"]) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in body:
        print(line(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK}")
    parser.add_argument("--n", type=int, default=N_SAMPLES)
    parser.add_argument("--d", type=int, default=FEATURE_DIM)
    parser.add_argument("--c", type=int, default=N_CLASSES)
    parser.add_argument("--e", type=int, default=EMBED_DIM)
    parser.add_argument("--k", type=int, default=N_EMBEDDINGS)
    parser.add_argument("--ref-targets", type=int, default=None,
                        help="time the reference F-label loop on this many targets and scale linearly")
    args = parser.parse_args()
    sizes = QUICK if args.quick else dict(n=args.n, d=args.d, c=args.c, e=args.e, k=args.k)
    print_table(run(**sizes, ref_targets=args.ref_targets))


if __name__ == "__main__":
    main()
