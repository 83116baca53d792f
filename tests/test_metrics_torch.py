"""The torch backend of the metrics (metrics/_backend.py, metrics/torch_backend.py): the same numbers
as numpy (CPU torch, float64, |diff| <= 1e-8 relative), the same errors, device/dtype validation."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import metrics  # noqa: E402
from metrics._backend import prepare_on  # noqa: E402
from metrics.torch_backend import TorchPreparedFeatures  # noqa: E402

#: the metrics (registry names) with a torch backend, and the issue's six families
TORCH_METRICS = ["logme", "emms", "emms_evidence", "emms_ols", "emms_onestep", "transrate", "hscore", "hscore_reg",
                 "leep", "nce"]
TOL = 1e-8


def _data(n, d, c, *, e=16, k=3, grouped=True, offset=0.3, seed=0):
    """Class-structured features (N, D) with anisotropic scales, labels, label embeddings (grouped by
    class or one row per sample), source softmax outputs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    means = 2.0 * rng.standard_normal((c, d))
    X = (means[y] + rng.standard_normal((n, d))) @ np.diag(np.geomspace(1.0, 1e-2, d)) + offset
    Y = rng.standard_normal((c, e, k))[y] if grouped else rng.standard_normal((n, e, k))
    logits = rng.standard_normal((n, 12)) + 3.0 * np.eye(12)[y % 12]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return dict(features=X, labels=y, label_embeddings=Y, source_probs=P)


CASES = {
    "primal": dict(n=400, d=32, c=6),
    "ungrouped": dict(n=300, d=24, c=5, grouped=False),
    "real_shaped": dict(n=1000, d=96, c=20, e=64, k=3),      # a small cnn_group-like dataset
    "dual": dict(n=40, d=120, c=5),                         # N <= D: the N x N side
    "square": dict(n=60, d=60, c=4, offset=5.0),
}


def _outcome(fn, kwargs):
    try:
        return fn(**kwargs)
    except Exception as exc:      # noqa: BLE001 - the error itself is compared
        return exc


def _assert_same(a, b):
    if isinstance(a, Exception):
        assert type(b) is type(a) and str(b) == str(a)
    else:
        assert isinstance(b, float), b
        assert abs(a - b) <= TOL * max(1.0, abs(a)), (a, b)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", TORCH_METRICS)
def test_torch_cpu_equals_numpy(name, case):
    fn = metrics.get_metric(name)
    assert "torch" in fn.backends
    data = _data(**CASES[case])
    kwargs = {k: data[k] for k in fn.requires}
    a = _outcome(fn, kwargs)
    b = _outcome(fn, dict(kwargs, backend="torch", device="cpu"))
    _assert_same(a, b)


def test_regression_targets_and_emms_options_match():
    data = _data(300, 24, 5, grouped=False)
    X, Y = data["features"], data["label_embeddings"]
    targets = Y[:, :, 0]
    _assert_same(metrics.logme(X, targets), metrics.logme(X, targets, backend="torch", device="cpu"))
    pl = metrics.prepare_label_embeddings(Y)
    _assert_same(metrics.logme(X, pl), metrics.logme(X, pl, backend="torch", device="cpu"))
    for ridge in (None, 0.01, "auto", "ledoit_wolf"):
        for standardise in (True, False):
            a = metrics.emms(X, Y, ridge=ridge, standardise=standardise, return_weights=True)
            b = metrics.emms(X, Y, ridge=ridge, standardise=standardise, return_weights=True, backend="torch",
                             device="cpu")
            _assert_same(a[0], b[0])
            np.testing.assert_allclose(b[1], a[1], atol=1e-7)
    for cv in ("gcv", "loo"):
        _assert_same(metrics.emms_cv(X, Y, cv=cv), metrics.emms_cv(X, Y, cv=cv, backend="torch", device="cpu"))
        small = _data(30, 60, 3)                                  # N <= D
        _assert_same(metrics.emms_cv(small["features"], small["label_embeddings"], cv=cv),
                     metrics.emms_cv(small["features"], small["label_embeddings"], cv=cv, device="cpu"))


@pytest.mark.parametrize("name", ["logme", "emms", "emms_ols", "hscore", "hscore_reg", "transrate"])
def test_degenerate_inputs_raise_the_same_errors(name):
    fn = metrics.get_metric(name)
    data = _data(50, 8, 4)
    data["features"] = np.full((50, 8), 3.0)                               # constant features
    kwargs = {k: data[k] for k in fn.requires}
    _assert_same(_outcome(fn, kwargs), _outcome(fn, dict(kwargs, backend="torch", device="cpu")))
    data["features"] = np.zeros((50, 8))
    kwargs = {k: data[k] for k in fn.requires}
    _assert_same(_outcome(fn, kwargs), _outcome(fn, dict(kwargs, backend="torch", device="cpu")))


def test_validation_errors_are_the_numpy_ones():
    data = _data(50, 8, 4)
    bad = data["features"].copy()
    bad[3, 2] = np.nan
    for name in ["logme", "emms", "transrate", "hscore"]:
        fn = metrics.get_metric(name)
        kwargs = {k: data[k] for k in fn.requires}
        kwargs["features"] = bad
        with pytest.raises(ValueError, match="NaN"):
            fn(**kwargs, backend="torch", device="cpu")
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.leep(data["source_probs"] * 2, data["labels"], backend="torch", device="cpu")
    with pytest.raises(ValueError, match="integer dtype"):
        metrics.nce_from_probs(data["source_probs"], data["labels"].astype(float), backend="torch", device="cpu")


def test_torch_tensors_are_accepted_and_not_modified():
    data = _data(200, 16, 4)
    Xt = torch.tensor(data["features"])
    before = Xt.clone()
    yt = torch.tensor(data["labels"])
    Pt = torch.tensor(data["source_probs"])
    _assert_same(metrics.logme(data["features"], data["labels"]), metrics.logme(Xt, data["labels"], backend="torch", device="cpu"))
    _assert_same(metrics.emms_default(data["features"], data["label_embeddings"]),
                 metrics.emms_default(Xt, torch.tensor(data["label_embeddings"]), backend="torch", device="cpu"))
    _assert_same(metrics.leep(data["source_probs"], data["labels"]), metrics.leep(Pt, yt, backend="torch", device="cpu"))
    _assert_same(metrics.nce_from_probs(data["source_probs"], data["labels"]),
                 metrics.nce_from_probs(Pt, yt, backend="torch", device="cpu"))
    assert torch.equal(Xt, before)


def test_prepared_features_share_one_conversion():
    data = _data(300, 24, 5)
    F = metrics.prepare_features(data["features"])
    T1 = prepare_on(F, "torch", "cpu")
    assert isinstance(T1, TorchPreparedFeatures) and prepare_on(F, "torch", "cpu") is T1
    assert prepare_on(T1) is T1                                    # kept on its backend
    assert type(prepare_on(T1, "numpy")) is metrics.PreparedFeatures
    a = metrics.hscore(F, data["labels"], backend="torch", device="cpu")
    assert "centred_eigh" in T1._cache and "centred_eigh" not in F._cache   # computed by torch, once
    _assert_same(metrics.hscore(data["features"], data["labels"]), a)
    _assert_same(a, metrics.hscore(T1, data["labels"]))                    # a torch-prepared F as input
    assert T1.centred_gram().flags.writeable is False


def test_device_dtype_and_backend_validation():
    with pytest.raises(KeyError, match="unknown metric backend 'jax'"):
        metrics.get_backend("jax")
    with pytest.raises(ValueError, match="not a torch device"):
        metrics.get_backend("torch", device="gpu0")
    with pytest.raises(ValueError, match="supports 'cpu' and 'cuda'"):
        metrics.get_backend("torch", device="meta")
    with pytest.raises(ValueError, match="dtype must be one of"):
        metrics.get_backend("torch", device="cpu", dtype=torch.int32)
    with pytest.raises(ValueError, match="takes no device"):
        metrics.get_backend("numpy", device="cpu")
    with pytest.raises(ValueError, match="computes in float64"):
        metrics.get_backend("numpy", dtype=torch.float32)
    assert metrics.get_backend("numpy", dtype=np.float64).numpy
    assert metrics.resolve_backend(None, "cpu").key == "torch:cpu:float64"    # a device implies torch
    B = metrics.get_backend("torch", device="cpu")
    assert B.key == "torch:cpu:float64" and not B.numpy
    data = _data(60, 8, 3)
    with pytest.raises(ValueError, match="give one of them"):
        metrics.logme(data["features"], data["labels"], backend=B, device="cpu")
    with pytest.raises(ValueError, match="backend must be None"):
        metrics.logme(data["features"], data["labels"], backend=3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            metrics.logme(data["features"], data["labels"], backend="torch", device="cuda")
        assert metrics.resolve_backend("auto").numpy
    else:
        assert metrics.resolve_backend("auto").key.startswith("torch:cuda")


@pytest.mark.parametrize("name", ["logme", "emms", "transrate", "hscore", "hscore_reg", "leep"])
def test_float32_option_is_close(name):
    fn = metrics.get_metric(name)
    data = _data(400, 16, 5)
    kwargs = {k: data[k] for k in fn.requires}
    B = metrics.get_backend("torch", device="cpu", dtype=torch.float32)
    a, b = fn(**kwargs), fn(**kwargs, backend=B)
    assert b == pytest.approx(a, rel=1e-3, abs=1e-4)
    assert b != a                                                 # really computed in float32


def test_runner_uses_the_backend_and_records_it(tmp_path, monkeypatch):
    from evaluation import evaluate
    from evaluation.synthetic import write_synthetic_caches
    root = tmp_path / "cache"
    quality = {"strong": 0.9, "weak": 0.4}
    write_synthetic_caches(root, datasets={"alpha": (120, 4)}, models={m: 16 for m in quality}, quality=quality,
                           encoders={"enc_a": 8}, source_classes=20, random_state=0)
    names = ["emms", "logme", "leep", "hscore", "sfda"]                  # sfda: no torch backend (numpy)
    common = dict(datasets=["alpha"], models=list(quality), metrics=names, encoders=["enc_a"], progress=False,
                  log=lambda _: None)
    ref = evaluate(root, tmp_path / "numpy", backend="numpy", **common)
    B = metrics.get_backend("torch", device="cpu")
    calls = []
    original = type(B).prepare
    monkeypatch.setattr(type(B), "prepare", lambda self, F: calls.append(1) or original(self, F))
    got = evaluate(root, tmp_path / "torch", backend=B, **common)
    assert len(calls) == 2 * 3                                           # 2 models x (emms, logme, hscore)
    assert ref.backend == "numpy" and got.backend == got.datasets["alpha"].backend == "torch:cpu:float64"
    for name in names:
        for model in quality:
            _assert_same(ref.datasets["alpha"].scores[name][model], got.datasets["alpha"].scores[name][model])
    auto = evaluate(root, tmp_path / "auto", **common)                 # default "auto": numpy without a GPU
    assert auto.backend == metrics.resolve_backend("auto").key


def test_group_sum_one_hot_equals_index_add(monkeypatch):
    from metrics import torch_backend
    from metrics.torch_backend import group_sum
    monkeypatch.setattr(torch_backend, "ONE_HOT_GROUPS", 4)   # several blocks of groups
    rng = np.random.default_rng(3)
    index = torch.as_tensor(rng.integers(0, 7, 500))
    A = torch.as_tensor(rng.standard_normal((500, 9)))
    a = group_sum(index, 9, A, one_hot=False)                 # 2 empty groups
    b = group_sum(index, 9, A, one_hot=True)                  # the CUDA path, here on the CPU
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    assert torch.all(a[7:] == 0)


@pytest.mark.parametrize("name", ["logme", "emms", "hscore", "leep"])
def test_cuda_group_sums_path_matches_numpy(name):
    B = metrics.get_backend("torch", device="cpu")
    B.one_hot = True                                          # the deterministic group sums used on CUDA
    fn = metrics.get_metric(name)
    data = _data(**CASES["real_shaped"])
    kwargs = {k: data[k] for k in fn.requires}
    _assert_same(fn(**kwargs), fn(**kwargs, backend=B))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", ["primal", "dual", "ungrouped"])
@pytest.mark.parametrize("name", TORCH_METRICS)
def test_cuda_equals_numpy(name, case):
    fn = metrics.get_metric(name)
    data = _data(**CASES[case])
    kwargs = {k: data[k] for k in fn.requires}
    _assert_same(_outcome(fn, kwargs), _outcome(fn, dict(kwargs, backend="torch", device="cuda")))
    assert metrics.resolve_backend("auto").key == f"torch:cuda:{torch.cuda.current_device()}:float64"
