"""Bootstrap intervals of rank measures (evaluation.uncertainty): known values and properties."""
import numpy as np
import pytest

from evaluation.runner import DatasetResult
from evaluation.uncertainty import bootstrap_rank_measures, format_interval_table


def _result(name, gt, scores):
    models = list(gt)
    return DatasetResult(dataset=name, models=models, metrics=list(scores), scores=scores,
                         seconds={k: {m: 0.0 for m in v} for k, v in scores.items()}, ground_truth=gt)


def _zoo(M=12, seed=0, datasets=3):
    rng = np.random.default_rng(seed)
    out = []
    for d in range(datasets):
        gt = {f"m{i}": float(60 + 2 * i + rng.normal(0, 0.1)) for i in range(M)}
        scores = {"perfect": dict(gt),
                  "noisy": {m: v + rng.normal(0, 6) for m, v in gt.items()},
                  "random": {m: float(rng.normal()) for m in gt}}
        out.append(_result(f"d{d}", gt, scores))
    return out


def test_perfect_metric_has_a_degenerate_interval_at_one_and_beats_random():
    res = bootstrap_rank_measures(_zoo(), n_boot=200, random_state=0)
    s = res.summary
    assert s.loc["perfect", "point"] == pytest.approx(1.0)
    assert s.loc["perfect", "ci_low"] == pytest.approx(1.0) and s.loc["perfect", "ci_high"] == pytest.approx(1.0)
    assert s.loc["random", "ci_low"] < s.loc["random", "point"] < s.loc["random", "ci_high"]
    assert res.significant.loc["perfect", "random"] and not res.significant.loc["random", "perfect"]
    assert "random" in res.better_than("perfect")
    assert not res.significant.loc["perfect", "perfect"]
    table = format_interval_table(res)
    assert list(table.index)[0] == "perfect" and table.iloc[0, 0] == "1.00 [1.00, 1.00]"


def test_no_noise_and_all_models_collapses_every_interval_to_the_point():
    res = bootstrap_rank_measures(_zoo(), n_boot=50, subset_fraction=1.0)
    assert not res.seed_noise
    np.testing.assert_allclose(res.summary["ci_low"], res.summary["point"])
    np.testing.assert_allclose(res.summary["ci_high"], res.summary["point"])


def test_seed_noise_widens_the_interval_of_a_metric_tied_to_the_mean():
    # two models 0.5 apart whose seeds spread by +-5: the order of the means flips under resampling
    gt = {"a": 70.0, "b": 70.5, "c": 80.0}
    seeds = {"d": {"a": [65.0, 70.0, 75.0], "b": [65.5, 70.5, 75.5], "c": [80.0, 80.0, 80.0]}}
    r = _result("d", gt, {"right": dict(gt)})
    res = bootstrap_rank_measures([r], seeds=seeds, n_boot=300, subset_fraction=1.0, measure="kendall_tau")
    assert res.seed_noise
    assert res.summary.loc["right", "point"] == pytest.approx(1.0)
    assert res.summary.loc["right", "ci_low"] < 0.5          # a and b swap in many replicates
    no_seed = bootstrap_rank_measures([r], n_boot=50, subset_fraction=1.0, measure="kendall_tau")
    assert no_seed.summary.loc["right", "ci_low"] == pytest.approx(1.0)


def test_deterministic_and_does_not_mutate_inputs():
    zoo = _zoo()
    before = [dict(r.ground_truth) for r in zoo]
    a = bootstrap_rank_measures(zoo, n_boot=60, random_state=3)
    b = bootstrap_rank_measures(zoo, n_boot=60, random_state=3)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    c = bootstrap_rank_measures(zoo, n_boot=60, random_state=4)
    assert not np.array_equal(a.replicates, c.replicates)
    assert [dict(r.ground_truth) for r in zoo] == before


def test_metric_undefined_on_a_dataset_is_left_out_of_its_mean():
    zoo = _zoo(datasets=2)
    const = {m: 1.0 for m in zoo[1].models}
    zoo[0].scores["partial"] = dict(zoo[0].ground_truth)
    zoo[0].metrics.append("partial")
    zoo[1].scores["partial"] = const
    zoo[1].metrics.append("partial")
    res = bootstrap_rank_measures(zoo, n_boot=50)
    assert res.summary.loc["partial", "n_datasets"] == 1
    assert res.summary.loc["partial", "point"] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"measure": "spearman"}, "unknown measure"),
    ({"n_boot": 3}, "n_boot"),
    ({"confidence": 1.5}, "confidence"),
    ({"subset_fraction": 0.0}, "subset_fraction"),
    ({"seeds": {"d0": {"m0": [1.0, 2.0]}}}, "different tables"),
    ({"seeds": {"d0": {"m0": []}}}, "non-empty"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_rank_measures(_zoo(), **kwargs)


def test_needs_ground_truth():
    r = _zoo(datasets=1)[0]
    r.ground_truth = None
    with pytest.raises(ValueError, match="no ground truth"):
        bootstrap_rank_measures([r])


def test_tables_are_written_and_printed(tmp_path):
    from evaluation.report import format_bootstrap
    from evaluation.results import save_bootstrap
    import pandas as pd

    res = bootstrap_rank_measures(_zoo(), n_boot=40)
    written = save_bootstrap(res, tmp_path)
    summary = pd.read_csv(written["bootstrap_weighted_tau_summary"], index_col=0)
    assert summary.loc["perfect", "point"] == pytest.approx(1.0)
    sig = pd.read_csv(written["bootstrap_weighted_tau_significance"], index_col=0)
    assert bool(sig.loc["perfect", "random"]) and not bool(sig.loc["random", "perfect"])
    text = format_bootstrap(res)
    assert "perfect" in text and "95% bootstrap interval" in text and "random" in text


def test_replicates_that_cannot_vary_call_nothing_significant():
    # 3 models, no seeds: every replicate is the full data, so a gap is not evidence of anything
    gt = {"a": 1.0, "b": 2.0, "c": 3.0}
    r = _result("d", gt, {"right": dict(gt), "wrong": {"a": 3.0, "b": 2.0, "c": 1.0}})
    res = bootstrap_rank_measures([r], n_boot=20)
    assert not res.informative
    assert not res.significant.values.any()
    assert bootstrap_rank_measures(_zoo(), n_boot=20).informative


def test_a_metric_scoring_few_models_is_not_ranked_above_those_scoring_all():
    """Over 2 models every correlation is +-1: such a dataset is undefined for the metric, and a
    metric that scored only some models is listed after the ones that scored all of them."""
    from evaluation.report import format_bootstrap
    from evaluation.tables import ranking_table, summary_table

    zoo = _zoo(datasets=2)
    two = {m: zoo[0].ground_truth[m] for m in zoo[0].models[:2]}            # perfect, but on 2 models
    most = {m: zoo[1].ground_truth[m] for m in zoo[1].models[:6]}            # perfect on 6 of 12
    for r, s in zip(zoo, (two, most)):
        r.scores["subset"] = s
        r.seconds["subset"] = {m: 0.0 for m in s}
        r.metrics.append("subset")
    assert np.isnan(ranking_table(zoo[0]).loc["subset", "weighted_tau"])
    assert ranking_table(zoo[1]).loc["subset", "weighted_tau"] == pytest.approx(1.0)
    assert summary_table(zoo).loc["subset", "weighted_tau"] == pytest.approx(1.0)   # dataset 0 left out
    res = bootstrap_rank_measures(zoo, n_boot=50)
    s = res.summary
    assert (s.loc["subset", "n_scored"], s.loc["subset", "n_models"]) == (8, 24)
    assert (s.loc["perfect", "n_scored"], s.loc["perfect", "n_models"]) == (24, 24)
    assert s.loc["subset", "n_datasets"] == 1 and s.loc["subset", "point"] == pytest.approx(1.0)
    table = format_interval_table(res)
    assert list(table.index)[-1] == "subset" and table.loc["subset", "models scored"] == "8/24"
    assert list(table.index)[0] == "perfect"
    assert "listed last: subset" in format_bootstrap(res)


def test_ground_truth_resolution_counts_pairs_beyond_seed_noise():
    import scipy.stats

    from evaluation.report import format_bootstrap
    from evaluation.uncertainty import ground_truth_resolution

    gt = {"a": 50.0, "b": 60.0, "c": 60.5, "d": 99.0}
    seeds = {"d0": {"a": [49.0, 50.0, 51.0], "b": [59.0, 60.0, 61.0], "c": [58.5, 60.5, 62.5], "d": [99.0, 99.0, 99.0]}}
    r = _result("d0", gt, {"perfect": dict(gt)})
    res = ground_truth_resolution([r], seeds=seeds)
    row = res.loc["d0"]
    assert (row["n_models"], row["n_pairs"], row["pairs_tested"]) == (4, 6, 6)
    assert row["accuracy_range"] == pytest.approx(49.0) and row["median_seed_std"] == pytest.approx(1.0)
    # b vs c: 0.5 apart with stds 1 and 2 -> not separated; every other pair is many stds apart
    p_bc = scipy.stats.ttest_ind([59.0, 60.0, 61.0], [58.5, 60.5, 62.5], equal_var=False).pvalue
    assert p_bc > 0.05
    assert row["separated_pairs"] == pytest.approx(5 / 6)
    # without seeds nothing can be tested; a model with a single seed is left out of the tests
    assert np.isnan(ground_truth_resolution([r]).loc["d0", "separated_pairs"])
    one = {"d0": {**seeds["d0"], "d": [99.0]}}
    assert ground_truth_resolution([r], seeds=one).loc["d0", "pairs_tested"] == 3
    # two exact models tie only when equal; attached to the bootstrap and printed
    same = {"d0": {"a": [50.0] * 3, "b": [60.0] * 3, "c": [60.5] * 3, "d": [99.0] * 3}}
    assert ground_truth_resolution([r], seeds=same).loc["d0", "separated_pairs"] == 1.0
    boot = bootstrap_rank_measures([r], seeds=seeds, n_boot=20)
    assert boot.resolution.loc["d0", "separated_pairs"] == pytest.approx(5 / 6)
    assert "ground-truth resolution" in format_bootstrap(boot)
    with pytest.raises(ValueError, match="alpha"):
        ground_truth_resolution([r], seeds=seeds, alpha=0.0)


def test_a_metric_skipping_models_is_compared_on_the_models_both_scored():
    """'subset' is perfect on the 6 models it scores; 'full' is perfect on those 6 and random on the
    rest. Judged each on its own models, subset would look better; on their common models they are
    equal, so neither is significantly better (while 'full' still beats 'random' on all models)."""
    zoo = _zoo(M=12, datasets=3)
    rng = np.random.default_rng(5)
    for r in zoo:
        first = r.models[:6]
        r.scores["subset"] = {m: r.ground_truth[m] for m in first}
        r.scores["full"] = {m: (r.ground_truth[m] if m in first else float(rng.normal(0, 50))) for m in r.models}
        for k in ("subset", "full"):
            r.seconds[k] = {m: 0.0 for m in r.scores[k]}
            r.metrics.append(k)
    res = bootstrap_rank_measures(zoo, n_boot=100, random_state=1)
    assert res.summary.loc["subset", "point"] > res.summary.loc["full", "point"]   # alone, subset looks better
    assert not res.significant.loc["subset", "full"] and not res.significant.loc["full", "subset"]
    assert res.difference_low.loc["subset", "full"] == pytest.approx(0.0, abs=1e-12)
    assert res.difference_high.loc["subset", "full"] == pytest.approx(0.0, abs=1e-12)
    assert res.difference_low.loc["full", "subset"] == pytest.approx(0.0, abs=1e-12)
    assert res.significant.loc["perfect", "random"]
