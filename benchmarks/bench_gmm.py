"""Speed of ``metrics._gmm.gmm_posteriors`` against scikit-learn's ``GaussianMixture`` (full
covariance), the GMM inside NLEEP, at NLEEP's realistic sizes.

Data: class-structured features with a decaying spectrum (like a backbone's), reduced as NLEEP does::

    scale = arange(1, D + 1) ** -0.6
    X = (randn(N, D) + 0.5 randn(C, D)[y]) * scale,  y ~ uniform{0..C-1}
    Z = metrics.nleep.pca_keep_variance(X, 0.8)          (d ~ 75-90 dims)

and the mixture has K = 5 C components (NLEEP's ratio), plus one well-populated case (K = C).
Prints, per case: sizes, scikit-learn seconds (``fit(Z).predict_proba(Z)``), ours, the speed-up,
the max abs posterior difference, the NLEEP (LEEP of the posteriors) difference, and scikit-learn's
EM iteration count. Runs with single-threaded BLAS (as NLEEP does). Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gmm.py            # N=5000 D=2048, C = 47 196 397 (+ 10)
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gmm.py --quick    # a few seconds
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from metrics._gmm import gmm_posteriors
from metrics._validation import check_labels
from metrics.leep import leep_from_encoded
from metrics.nleep import NLEEP_VARIANCE, pca_keep_variance

# ---------------------------------------------------------------- configuration (full size)
N_SAMPLES = 5000
FEATURE_DIM = 2048
#: (number of classes C, GMM components per class): NLEEP's ratio 5, then a well-populated fit
CASES = ((47, 5), (196, 5), (397, 5), (10, 1))
QUICK = dict(n=1000, dim=256, cases=((20, 5), (40, 5), (4, 1)))
SPECTRUM_DECAY = 0.6
CLASS_SPREAD = 0.5
SEED = 0
RANDOM_STATE = 0


def make_features(n: int, dim: int, n_classes: int, seed: int):
    """(X (n, dim), y (n,)): class-structured features with a power-law spectrum."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    scale = np.arange(1, dim + 1) ** -SPECTRUM_DECAY
    X = (rng.standard_normal((n, dim)) + CLASS_SPREAD * rng.standard_normal((n_classes, dim))[y]) * scale
    return X, y


def run_case(n: int, dim: int, n_classes: int, ratio: int) -> dict:
    X, y = make_features(n, dim, n_classes, SEED)
    Z = pca_keep_variance(X, NLEEP_VARIANCE)
    K = ratio * n_classes
    t0 = time.perf_counter()
    gm = GaussianMixture(n_components=K, covariance_type="full", random_state=RANDOM_STATE).fit(Z)
    ref = gm.predict_proba(Z)
    t1 = time.perf_counter()
    ours = gmm_posteriors(Z, K, random_state=RANDOM_STATE)
    t2 = time.perf_counter()
    enc = check_labels(y)
    return dict(N=n, d=Z.shape[1], C=n_classes, K=K, sklearn_s=t1 - t0, ours_s=t2 - t1,
                speedup=(t1 - t0) / (t2 - t1), max_abs_diff=float(np.abs(ours - ref).max()),
                nleep_diff=abs(leep_from_encoded(ours, enc) - leep_from_encoded(ref, enc)),
                sklearn_iter=gm.n_iter_)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--n", type=int, default=None, help=f"samples (default {N_SAMPLES})")
    parser.add_argument("--dim", type=int, default=None, help=f"feature dimension (default {FEATURE_DIM})")
    parser.add_argument("--classes", type=int, nargs="+", default=None,
                        help="class counts C to run with K = 5 C (default: the configured cases)")
    args = parser.parse_args(argv)
    n = args.n or (QUICK["n"] if args.quick else N_SAMPLES)
    dim = args.dim or (QUICK["dim"] if args.quick else FEATURE_DIM)
    cases = tuple((c, 5) for c in args.classes) if args.classes else (QUICK["cases"] if args.quick else CASES)

    header = (f"{'N':>6} {'d':>4} {'C':>4} {'K':>5} {'sklearn s':>10} {'ours s':>8} {'speed-up':>9} "
              f"{'max|dP|':>9} {'|dNLEEP|':>9} {'sk iter':>7}")
    print(header)
    print("-" * len(header))
    with threadpool_limits(limits=1, user_api="blas"):
        for n_classes, ratio in cases:
            r = run_case(n, dim, n_classes, ratio)
            print(f"{r['N']:>6} {r['d']:>4} {r['C']:>4} {r['K']:>5} {r['sklearn_s']:>10.2f} {r['ours_s']:>8.2f} "
                  f"{r['speedup']:>8.1f}x {r['max_abs_diff']:>9.1e} {r['nleep_diff']:>9.1e} {r['sklearn_iter']:>7}",
                  flush=True)


if __name__ == "__main__":
    main()
