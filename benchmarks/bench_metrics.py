"""Speed benchmark of the metrics library against straightforward per-class-loop implementations
of the published kind (written below, clearly labelled REFERENCE).

Measured in one run, on synthetic class-structured data of realistic size:

Two published LogME loops serve as references:

* ORIGINAL -- thuml/LogME ``LogME.py`` ``each_evidence`` (the version copied into the EMMS code and
  many others): full SVD of the D x D Gram matrix, then per target up to 11 fixed-point steps, each
  with a sample-space residual (an N x D mat-vec); :func:`reference_logme_original`.
* FIXED-POINT -- the later LogME ``_fit_fixed_point``: truncated SVD, then one GEMV and <= 11 scalar
  fixed-point steps per target (residual from the singular values); :func:`reference_logme_per_class`.

Measured in one run, on synthetic class-structured data of realistic size:

1. LogME (classification): vectorised ``metrics.logme`` vs both per-class loops.
2. LogME on label embeddings (E*K regression targets): ``metrics.logme_flabel`` vs both loops.
3. Converged EMMS (``emms_ols``, the paper's OLS w-step, and ``emms`` = ``ridge="auto"``) vs LogME on
   the same label embeddings (the paper reports EMMS ~5x faster than LogME).
4. TransRate: log-determinants on the smaller Gram side vs the naive D x D side for every class.

A reference loop that would take too long at full size is timed on its first M targets
(``--ref-targets``, ``--orig-targets``); its shared set-up (Gram matrix + SVD) is timed once and only
the per-target part is scaled linearly to all targets (no score difference is shown then).

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
def reference_logme_original(f: np.ndarray, y: np.ndarray, regression: bool = False,
                             max_targets: int | None = None) -> tuple[float, int, float]:
    """REFERENCE (original published LogME): thuml/LogME ``LogME.py`` ``each_evidence``, as copied
    into the EMMS code.

    Set-up: ``v, s, vh = svd(F^T F)`` (full SVD of the D x D Gram matrix). Per target ``y_c``
    (``range(y.max() + 1)`` one-hot classes, or the columns of a regression target):
    ``tmp = vh @ (F^T y_c)``; from ``alpha = beta = 1`` at most 11 steps of
    ``m = v @ (tmp * beta / (alpha + beta * s))``, ``gamma = sum s / (s + alpha/beta)``,
    ``alpha = gamma / (||m||^2 + 1e-5)``, ``beta = (N - gamma) / (||y_c - F m||^2 + 1e-5)`` (the
    residual in sample space: an N x D mat-vec every step), stopped when the relative change of
    ``alpha / beta`` is below 0.01; then the evidence with the last step's ``||m||^2`` and residual.
    Only the first ``max_targets`` targets are evaluated if given. Returns (mean evidence / N,
    number of targets evaluated, wall seconds of the shared set-up before the target loop).
    """
    start = time.perf_counter()
    F = f.astype(np.float64)
    N, D = F.shape
    v, s, vh = np.linalg.svd(F.T @ F, full_matrices=True)
    setup_seconds = time.perf_counter() - start
    n_targets = y.shape[1] if regression else int(y.max() + 1)
    if max_targets is not None:
        n_targets = min(n_targets, max_targets)
    eps = 1e-5
    evidences = []
    for i in range(n_targets):
        y_ = y[:, i].astype(np.float64) if regression else (y == i).astype(np.float64)
        alpha, beta = 1.0, 1.0
        lam = alpha / beta
        tmp = vh @ (F.T @ y_)
        for _ in range(11):
            gamma = (s / (s + lam)).sum()
            m = v @ (tmp * beta / (alpha + beta * s))
            m2 = float(m @ m)
            alpha = gamma / (m2 + eps)
            res2 = float(((y_ - F @ m) ** 2).sum())
            beta = (N - gamma) / (res2 + eps)
            new_lam = alpha / beta
            if abs(new_lam - lam) / lam < 0.01:
                break
            lam = new_lam
        evidence = (D / 2.0 * np.log(alpha) + N / 2.0 * np.log(beta)
                    - 0.5 * np.sum(np.log(alpha + beta * s)) - beta / 2.0 * (res2 + eps)
                    - alpha / 2.0 * (m2 + eps) - N / 2.0 * np.log(2 * np.pi))
        evidences.append(evidence / N)
    return float(np.mean(evidences)), n_targets, setup_seconds


def reference_logme_per_class(f: np.ndarray, y: np.ndarray, regression: bool = False,
                              max_targets: int | None = None) -> tuple[float, int, float]:
    """REFERENCE (later published LogME): ``_fit_fixed_point`` of the LogME v2 / EMMS repositories.

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


def timed_reference(reference, X, y, regression: bool, max_targets: int | None):
    """Time a REFERENCE loop, scaled to all targets if it ran on a subset.

    Returns (score or None if subset, wall s, CPU s, note). After the shared set-up the per-target
    loop is linear in the number of targets, so only ``total - setup`` is scaled.
    """
    total = y.shape[1] if regression else int(y.max() + 1)
    (score, n_done, setup), wall, cpu = timed(reference, X, y, regression, max_targets)
    if n_done == total:
        return score, wall, cpu, ""
    scale = (setup + (wall - setup) * total / n_done) / wall
    return None, wall * scale, cpu * scale, f" [loop timed on {n_done} of {total} targets, scaled]"


def _diff(ours: float, ref: float | None) -> str:
    return "" if ref is None else f"{abs(ours - ref):.1e}"


ORIGINAL = "LogME original loop (REFERENCE: thuml LogME.py each_evidence, EMMS-code copy)"
FIXED_POINT = "LogME fixed-point loop (REFERENCE: LogME v2 _fit_fixed_point)"


def run(n: int, d: int, c: int, e: int, k: int, ref_targets: int | None, orig_targets: int | None) -> list[dict]:
    X, y, Y = make_data(n, d, c, e, k)
    size = f"N={n} D={d} C={c}"
    esize = f"N={n} D={d} E={e} K={k}"
    rows = []

    # 1. LogME, classification
    orig, t_orig, c_orig, note_orig = timed_reference(reference_logme_original, X, y, False, None)
    ref, t_ref, c_ref, note_ref = timed_reference(reference_logme_per_class, X, y, False, None)
    ours, t_ours, c_ours = timed(metrics.logme, X, y)
    rows += [row(ORIGINAL + note_orig, size, t_orig, c_orig),
             row(FIXED_POINT + note_ref, size, t_ref, c_ref),
             row("LogME vectorised (metrics.logme)", size, t_ours, c_ours,
                 f"{t_orig / t_ours:.1f}x vs original, {t_ref / t_ours:.1f}x vs fixed-point",
                 f"orig {_diff(ours, orig)}, f-p {_diff(ours, ref)}")]

    # 2. LogME on the E*K label-embedding columns
    Yflat = Y.reshape(n, e * k)
    orig_fl, t_orig_fl, c_orig_fl, note_orig_fl = timed_reference(reference_logme_original, X, Yflat, True,
                                                                  orig_targets)
    ref_fl, t_ref_fl, c_ref_fl, note_fl = timed_reference(reference_logme_per_class, X, Yflat, True, ref_targets)
    ours_fl, t_fl, c_fl = timed(metrics.logme_flabel, X, Y)
    rows += [row(ORIGINAL.replace("loop", "F-label loop") + note_orig_fl, esize, t_orig_fl, c_orig_fl),
             row(FIXED_POINT.replace("loop", "F-label loop") + note_fl, esize, t_ref_fl, c_ref_fl),
             row("LogME F-label vectorised (metrics.logme_flabel)", esize, t_fl, c_fl,
                 f"{t_orig_fl / t_fl:.1f}x vs original, {t_ref_fl / t_fl:.1f}x vs fixed-point",
                 ", ".join(x for x in (f"orig {_diff(ours_fl, orig_fl)}" if orig_fl is not None else "",
                                       f"f-p {_diff(ours_fl, ref_fl)}" if ref_fl is not None else "") if x))]

    # 3. converged EMMS (paper OLS and evidence-chosen ridge) vs LogME on the same label embeddings
    def vs_logme(t):
        return (f"{t_fl / t:.1f}x vs vectorised LogME F-label, {t_orig_fl / t:.1f}x vs original loop, "
                f"{t_ref_fl / t:.1f}x vs fixed-point loop")

    _, t_ols, c_ols = timed(metrics.emms_ols, X, Y)
    (_, _, lam), t_auto, c_auto = timed(metrics.emms, X, Y, ridge="auto", return_weights=True)
    _, t_one, c_one = timed(metrics.emms, X, Y, max_iter=1)
    rows += [row("EMMS converged, OLS (emms_ols)", esize, t_ols, c_ols, vs_logme(t_ols)),
             row(f"EMMS converged, ridge='auto' (emms; chosen ridge {lam:.3g})", esize, t_auto, c_auto,
                 f"{t_auto / t_ols:.2f}x the time of emms_ols; " + vs_logme(t_auto)),
             row("EMMS one-step (emms_onestep)", esize, t_one, c_one, f"{t_fl / t_one:.1f}x vs vectorised LogME F-label")]

    # 4. TransRate
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
                        help="time the fixed-point reference F-label loop on this many targets and scale linearly")
    parser.add_argument("--orig-targets", type=int, default=None,
                        help="time the original reference F-label loop on this many targets and scale linearly")
    args = parser.parse_args()
    sizes = QUICK if args.quick else dict(n=args.n, d=args.d, c=args.c, e=args.e, k=args.k)
    print_table(run(**sizes, ref_targets=args.ref_targets, orig_targets=args.orig_targets))


if __name__ == "__main__":
    main()
