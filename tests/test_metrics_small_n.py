"""N <= D: the N x N (dual) computations equal the D x D ones, no D x D matrix is formed, and the
registry's EMMS stays discriminative (brute-force known values, invariances, LOO closed forms)."""
import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf_shrinkage as sk_ledoit_wolf_shrinkage

import metrics
from metrics._prepared import PreparedFeatures
from metrics.emms import _LOO, _Design, _Spectrum

REL = 1e-8


def _task(n=20, d=300, c=4, e=6, k=3, seed=0, signal=3.0, rank=None):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    if rank is None:
        X = rng.standard_normal((n, d))
    else:                                                   # rank-deficient features (OLS defined)
        X = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    X = X * rng.uniform(0.2, 3.0, d) + 5.0
    X[:, :c] += signal * np.eye(c)[y]
    Y = rng.standard_normal((c, e, k))[y]
    return X, y, Y


def _zscored_embeddings(Y):
    """The metric's z-scored label embeddings (population std, its ``+eps`` guard), (N, E, K)."""
    return metrics.prepare_label_embeddings(Y).zscored().full()


def _both_sides(fn, X, *args, **kwargs):
    dual = fn(metrics.prepare_features(X), *args, **kwargs)
    primal = fn(metrics.prepare_features(X, side="primal"), *args, **kwargs)
    return dual, primal


EMMS_CASES = [dict(ridge="ledoit_wolf", standardise=False), dict(ridge="ledoit_wolf"), dict(ridge=0.05),
              dict(ridge=0.05, max_iter=1), dict(ridge="auto"), dict(ridge="auto", standardise=False)]


@pytest.mark.parametrize("n, d", [(20, 300), (40, 120)])
def test_dual_side_equals_primal_side(n, d):
    X, y, Y = _task(n, d)
    assert metrics.prepare_features(X).side == "dual"
    for fn in (metrics.hscore, metrics.hscore_regularized, metrics.parc):
        dual, primal = _both_sides(fn, X, y)
        assert dual == pytest.approx(primal, rel=REL), fn.__name__
    for kwargs in EMMS_CASES:
        dual, primal = _both_sides(metrics.emms, X, Y, **kwargs)
        assert dual == pytest.approx(primal, rel=REL, abs=1e-14), kwargs
    for cv in ("gcv", "loo"):
        for standardise in (True, False):
            (s_d, t_d, r_d), (s_p, t_p, r_p) = _both_sides(metrics.emms_cv, X, Y, cv=cv, standardise=standardise,
                                                           return_weights=True)
            assert s_d == pytest.approx(s_p, rel=1e-7), (cv, standardise)
            np.testing.assert_allclose(t_d, t_p, atol=1e-5)
    # rank-deficient features: the OLS score is defined, on both sides the same
    Xl, yl, Yl = _task(n, d, rank=5)
    for kwargs in ({}, dict(max_iter=1)):
        dual, primal = _both_sides(metrics.emms, Xl, Yl, **kwargs)
        assert dual == pytest.approx(primal, rel=REL), kwargs


def test_no_d_by_d_matrix_when_n_below_d(monkeypatch):
    X, y, Y = _task(20, 300)

    def refuse(self, *a, **k):
        raise AssertionError("a D x D matrix was formed")
    for name in ("gram", "centred_gram", "standardised_gram", "centred_eigh", "standardised_eigh"):
        monkeypatch.setattr(PreparedFeatures, name, refuse)
    for name in ("hscore", "hscore_reg", "parc", "emms", "emms_evidence", "logme", "logme_flabel"):
        fn = metrics.get_metric(name)
        inputs = {"features": X, "labels": y, "label_embeddings": Y}
        assert np.isfinite(fn(**{k: inputs[k] for k in fn.requires})), name
    assert np.isfinite(metrics.emms_cv(X, Y, cv="loo"))


def test_n_above_d_is_unchanged():
    """N > D: the automatic side is the D x D one (bitwise the same results), no N x N quantity."""
    X, y, Y = _task(200, 30)
    auto, primal = metrics.prepare_features(X), metrics.prepare_features(X, side="primal")
    assert auto.side == "primal"
    for name in ("hscore", "hscore_reg", "parc", "emms", "emms_evidence", "emms_ols", "emms_onestep"):
        fn = metrics.get_metric(name)
        a = fn(**{k: {"features": auto, "labels": y, "label_embeddings": Y}[k] for k in fn.requires})
        b = fn(**{k: {"features": primal, "labels": y, "label_embeddings": Y}[k] for k in fn.requires})
        assert a == b, name
    assert not any("dual" in key for key in auto._cache)


def test_side_argument_validated():
    with pytest.raises(ValueError, match="side"):
        metrics.prepare_features(np.ones((3, 2)), side="both")


def test_ledoit_wolf_on_either_side_matches_scikit_learn():
    X, _, _ = _task(20, 300)
    for side in ("dual", "primal"):
        F = metrics.prepare_features(X, side=side)
        a, mu = F.ledoit_wolf()
        assert a == pytest.approx(sk_ledoit_wolf_shrinkage(X), rel=1e-10)
        assert mu == pytest.approx(np.trace(np.cov(X.T, bias=True)) / X.shape[1], rel=1e-10)
        a_s, _ = F.ledoit_wolf(standardised=True)
        assert a_s == pytest.approx(sk_ledoit_wolf_shrinkage(F.zscored()), rel=1e-10)


def test_principal_components_dual_match_svd():
    X, _, _ = _task(20, 300)
    P = metrics.prepare_features(X).principal_components(5)
    Xc = X - X.mean(axis=0)
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    V = Vt[:5].T * np.sign(Vt[:5].T[np.argmax(np.abs(Vt[:5].T), axis=0), np.arange(5)])
    np.testing.assert_allclose(P, Xc @ V, rtol=1e-8, atol=1e-8 * s[0])
    with pytest.raises(ValueError, match="rank"):
        metrics.prepare_features(X).principal_components(20)      # centred rank is N - 1 = 19


# ---------------------------------------------------------------- the registry's EMMS (Ledoit-Wolf ridge)
def _brute_emms_lw(X, Y, grid=2001):
    """Explicit w-step with the Ledoit-Wolf covariance of the centred features, t on a simplex grid (K=2)."""
    N, E, K = Y.shape
    Xc = X - X.mean(axis=0)
    Ys = _zscored_embeddings(Y)
    a = sk_ledoit_wolf_shrinkage(X)
    mu = np.trace(Xc.T @ Xc / N) / X.shape[1]
    lam = N * a * mu / (1 - a)
    best = np.inf
    for t1 in np.linspace(0.0, 1.0, grid):
        yt = Ys @ np.array([t1, 1 - t1])
        w = np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T @ yt)
        best = min(best, np.sum((Xc @ w - yt) ** 2) + lam * np.sum(w ** 2))
    return -best / (N * E)


@pytest.mark.parametrize("n, d", [(12, 40), (60, 8)])
def test_registry_emms_equals_brute_force(n, d):
    X, _, Y = _task(n, d, k=2, e=3, seed=3)
    ref = _brute_emms_lw(X, Y)
    got = metrics.get_metric("emms")(features=X, label_embeddings=Y)
    assert got == pytest.approx(ref, rel=1e-6)          # grid resolution in t, exact elsewhere
    assert got >= ref - 1e-12 * abs(ref)                 # the exact t-step is at least as good as the grid


def test_registry_emms_is_discriminative_at_small_n():
    """N < D: a feature set carrying the classes scores above pure noise; never the degenerate 0."""
    X, y, Y = _task(30, 300, c=5, signal=6.0, seed=1)
    noise = np.random.default_rng(9).standard_normal(X.shape)
    emms = metrics.get_metric("emms")
    good, bad = emms(features=X, label_embeddings=Y), emms(features=noise, label_embeddings=Y)
    assert bad < good < 0.0
    with pytest.raises(ValueError, match="degenerate"):
        metrics.emms_ols(X, Y)                          # the paper's estimator is undefined here


def test_registry_emms_invariances():
    X, y, Y = _task(20, 300, seed=2)
    emms = metrics.get_metric("emms")
    base = emms(features=X, label_embeddings=Y)
    rng = np.random.default_rng(0)
    rows, cols = rng.permutation(X.shape[0]), rng.permutation(X.shape[1])
    assert emms(features=X[rows], label_embeddings=Y[rows]) == pytest.approx(base, rel=1e-9)
    assert emms(features=X[:, cols], label_embeddings=Y) == pytest.approx(base, rel=1e-9)
    for c in (1e-6, 1e6):                                # global scale and offset of the features
        assert emms(features=c * X + 1e3, label_embeddings=Y) == pytest.approx(base, rel=1e-7)
    # per-column affine maps of the label embeddings (z-scored)
    assert emms(features=X, label_embeddings=3.0 * Y - 7.0) == pytest.approx(base, rel=1e-7)


def test_registry_emms_tends_to_ols_for_many_samples():
    rng = np.random.default_rng(4)
    n, d = 20000, 8
    y = np.arange(n) % 4
    X = rng.standard_normal((n, d)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1])
    X[:, :4] += np.eye(4)[y]
    Y = rng.standard_normal((4, 5, 2))[y] + 0.5 * rng.standard_normal((n, 5, 2))
    score, _, ridge = metrics.emms(X, Y, ridge="ledoit_wolf", standardise=False, return_weights=True)
    assert 0 < ridge < 1e-2
    assert score == pytest.approx(metrics.emms_ols(X, Y), rel=1e-3)


# ---------------------------------------------------------------- out-of-sample EMMS (emms_cv)
def _brute_loo(X, Y, t, lam, scale):
    """Explicit leave-one-out refits: ridge (penalty lam ||w||^2) with an unpenalised intercept on the
    scaled features (full-sample scaling, as the metric), target Y t of the z-scored embeddings."""
    N = X.shape[0]
    Xs = (X - X.mean(axis=0)) / scale
    Ys = _zscored_embeddings(Y)
    yt = Ys @ t
    err = 0.0
    for i in range(N):
        keep = np.arange(N) != i
        A, b = Xs[keep], yt[keep]
        Ac, bc = A - A.mean(axis=0), b - b.mean(axis=0)
        if lam == np.inf:                                    # no fit: the mean of the others
            w = np.zeros((A.shape[1],) + bc.shape[1:])
        elif lam == 0:                                       # min-norm interpolation
            w = np.linalg.pinv(Ac) @ bc
        else:
            w = np.linalg.solve(Ac.T @ Ac + lam * np.eye(A.shape[1]), Ac.T @ bc)
        err += np.sum((yt[i] - b.mean(axis=0) - (Xs[i] - A.mean(axis=0)) @ w) ** 2)
    return err / N


@pytest.mark.parametrize("n, d", [(12, 30), (30, 8), (12, 11)])
@pytest.mark.parametrize("standardise", [True, False])
def test_loo_closed_form_equals_explicit_refits(n, d, standardise):
    X, _, Y = _task(n, d, c=3, e=4, k=2, seed=5)
    Yp = metrics.prepare_label_embeddings(Y)
    t = np.array([0.3, 0.7])
    for side in ("dual", "primal"):
        F = metrics.prepare_features(X, side=side)
        scale = F.zscore_scale() if standardise else 1.0
        loo = _LOO(_Spectrum(_Design(F, standardise), Yp.zscored()), n)
        lams = [0.5, 7.0] + ([0.0] if n <= d + 1 else [])     # 0: the min-norm interpolation limit
        for lam in lams:
            assert t @ loo(lam) @ t == pytest.approx(_brute_loo(X, Y, t, lam, scale), rel=1e-9), (side, lam)
    # the public score is minus the LOO error per dimension at its (t, ridge)
    score, t_opt, ridge = metrics.emms_cv(X, Y, cv="loo", standardise=standardise, return_weights=True)
    scale = metrics.prepare_features(X).zscore_scale() if standardise else 1.0
    assert -score * Y.shape[1] == pytest.approx(_brute_loo(X, Y, t_opt, ridge * n, scale), rel=1e-8)


def test_gcv_equals_explicit_hat_matrix():
    X, _, Y = _task(30, 8, c=3, e=4, k=2, seed=6, signal=1.0)
    score, t, ridge = metrics.emms_cv(X, Y, cv="gcv", standardise=False, return_weights=True)
    assert 0 < ridge < np.inf                           # an interior optimum (the explicit S needs lam > 0)
    N = X.shape[0]
    Xc = X - X.mean(axis=0)
    Ys = _zscored_embeddings(Y)
    lam = ridge * N
    S = np.full((N, N), 1.0 / N) + Xc @ np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T)
    resid = (np.eye(N) - S) @ (Ys @ t)
    gcv = N * np.sum(resid ** 2) / (N - np.trace(S)) ** 2
    assert -score * Y.shape[1] == pytest.approx(gcv, rel=1e-8)
    # the chosen ridge minimises GCV (within the search tolerance) over a fine grid
    for lam2 in lam * np.array([0.5, 0.9, 1.1, 2.0]):
        S2 = np.full((N, N), 1.0 / N) + Xc @ np.linalg.solve(Xc.T @ Xc + lam2 * np.eye(X.shape[1]), Xc.T)
        r2 = (np.eye(N) - S2) @ (Ys @ t)
        assert N * np.sum(r2 ** 2) / (N - np.trace(S2)) ** 2 >= gcv * (1 - 1e-9)


def test_emms_cv_stays_discriminative_and_validates():
    X, y, Y = _task(30, 300, c=5, signal=6.0, seed=1)
    noise = np.random.default_rng(9).standard_normal(X.shape)
    for cv in ("gcv", "loo"):
        good = metrics.emms_cv(X, Y, cv=cv, standardise=False)
        bad = metrics.emms_cv(noise, Y, cv=cv, standardise=False)
        assert bad < good < 0.0
    with pytest.raises(ValueError, match="cv must be"):
        metrics.emms_cv(X, Y, cv="kfold")
    with pytest.raises(ValueError, match="standardise"):
        metrics.emms(X, Y, ridge="ledoit_wolf", standardise="yes")
    with pytest.raises(ValueError, match="ridge must be"):
        metrics.emms(X, Y, ridge="lw")


def test_benchmark_script_runs(capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_small_n.py"
    spec = importlib.util.spec_from_file_location("bench_small_n", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--shapes", "10x60", "--metrics", "hscore", "emms"]) == 0
    out = capsys.readouterr().out
    assert "10x60" in out and "speed-up" in out


def test_small_sample_study_pieces():
    """draw_scores / rank measures / summarise on synthetic models of known quality (no cache)."""
    import pandas as pd
    from evaluation.small_sample import _rank_measures, draw_scores, study_metrics, summarise, summary_markdown

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 20)
    emb = rng.standard_normal((4, 16))
    quality = {"good": 4.0, "mid": 1.5, "bad": 0.0}
    feats = {}
    for name, signal in quality.items():
        X = rng.standard_normal((labels.size, 120))
        X[:, :4] += signal * np.eye(4)[labels]
        feats[name] = X
    fns = study_metrics(["emms", "emms_loo", "emms_ols", "logme"])
    rows = []
    for n in (5, 10):
        for draw in range(3):
            scores, N = draw_scores(feats, labels, emb, fns, n, draw)
            assert N == 4 * n
            assert all(np.isnan(v) for v in scores["emms_ols"].values())      # D >= N - 1: undefined
            assert scores["emms"]["good"] > max(scores["emms"]["mid"], scores["emms"]["bad"])
            for name, s in scores.items():
                rows.append(dict(dataset="toy", n_per_class=n, draw=draw, N=N, metric=name,
                                 **_rank_measures(s, quality)))
    table = pd.DataFrame(rows)
    summary = summarise(table)
    assert summary.loc[("emms", 10, "toy"), "mean"] > 0.5
    assert summary.loc[("emms", 10, "toy"), "defined"] == 3
    assert summary.loc[("emms_ols", 10, "overall"), "defined"] == 0
    md = summary_markdown(summary, ["emms", "emms_ols"], ["toy"], 3, table)
    row = next(line for line in md.splitlines() if line.startswith("| emms |"))
    assert "undefined" in md and row.count("±") == 2 and row.endswith("| 3.00 |")
    with pytest.raises(ValueError, match="source-head"):
        study_metrics(["leep"])
