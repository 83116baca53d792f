"""A metric that is undefined on valid input (unregularised EMMS with D >= N) is recorded as skipped for
that model, with the reason, while every other (metric, model) pair is still scored."""
import math

import pytest

import metrics
from evaluation import evaluate
from evaluation.synthetic import write_synthetic_caches


def test_degenerate_pairs_are_skipped_with_reason(tmp_path, capsys):
    write_synthetic_caches(tmp_path / "cache", datasets={"small": (60, 3)},
                           models={"narrow": 16, "wide": 200}, quality={"narrow": 0.8, "wide": 0.5},
                           encoders={"enc": 24})
    result = evaluate(tmp_path / "cache", tmp_path / "results", datasets=["small"], models=["narrow", "wide"],
                      metrics=["emms", "emms_ols", "logme"], encoders=("enc",), progress=False)
    r = result.datasets["small"]
    assert set(r.scores["emms_ols"]) == {"narrow"}                       # D=200 >= N=60: undefined
    assert "degenerate" in r.skipped["emms_ols"]["wide"]
    assert "skipping metric 'emms_ols' for model 'wide'" in capsys.readouterr().out
    for name in ("emms", "logme"):                                       # evidence-ridge EMMS and LogME score both
        assert set(r.scores[name]) == {"narrow", "wide"}
        assert all(math.isfinite(v) for v in r.scores[name].values())


def test_degenerate_error_is_a_value_error_naming_the_fix():
    import numpy as np

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20, 40)), rng.standard_normal((20, 5, 2))
    with pytest.raises(metrics.DegenerateInputError, match="ridge"):
        metrics.emms(X, Y)
    assert issubclass(metrics.DegenerateInputError, ValueError)


def test_constant_scores_give_nan_measures_not_a_crash():
    import numpy as np

    from evaluation.runner import DatasetResult
    from evaluation.tables import agreement_table, ranking_table

    models = ["a", "b", "c"]
    r = DatasetResult(dataset="d", models=models, metrics=["flat", "good"],
                      scores={"flat": {m: 0.0 for m in models}, "good": {"a": 1.0, "b": 2.0, "c": 3.0}},
                      seconds={"flat": {m: 0.1 for m in models}, "good": {m: 0.1 for m in models}},
                      ground_truth={"a": 10.0, "b": 20.0, "c": 30.0})
    table = ranking_table(r)
    assert np.isnan(table.loc["flat", "weighted_tau"]) and np.isnan(table.loc["flat", "kendall_tau"])
    assert table.loc["good", "kendall_tau"] == 1.0
    assert np.isnan(agreement_table(r).loc["flat", "good"])


def test_float_noise_counts_as_a_tie():
    """H-score saturates at C - 1 for every model with D >= N; 1e-13 differences must not rank them."""
    import numpy as np

    from evaluation.runner import DatasetResult
    from evaluation.tables import ranking_table

    models = ["a", "b", "c", "d"]
    noisy = {"a": 9.0 + 1e-13, "b": 9.0, "c": 9.0 - 1e-13, "d": 8.0}
    r = DatasetResult(dataset="d", models=models, metrics=["sat", "flat"],
                      scores={"sat": noisy, "flat": {m: 2.0 + i * 1e-14 for i, m in enumerate(models)}},
                      seconds={"sat": {m: 0.0 for m in models}, "flat": {m: 0.0 for m in models}},
                      ground_truth={"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.5})
    table = ranking_table(r)
    import scipy.stats

    # a, b, c are one tie (9.0); the expected value treats them so
    expected = scipy.stats.kendalltau([9, 9, 9, 8], [1, 2, 3, 0.5]).statistic
    assert table.loc["sat", "kendall_tau"] == np.float64(expected)
    assert np.isnan(table.loc["flat", "kendall_tau"])  # all equal up to noise: undefined, not ranked
