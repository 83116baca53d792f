import numpy as np
import pytest
import scipy.stats

from metrics import ranking

GT = {"a": 90.0, "b": 85.0, "c": 80.0, "d": 70.0, "e": 60.0}
SCORES = {"a": 0.2, "b": 0.9, "c": 0.5, "d": 0.1, "e": -1.0}


def vectors(scores, gt):
    names = list(scores)
    return np.array([scores[m] for m in names]), np.array([gt[m] for m in names])


def test_matches_scipy():
    s, g = vectors(SCORES, GT)
    assert ranking.kendall_tau(SCORES, GT) == pytest.approx(scipy.stats.kendalltau(s, g).statistic)
    assert ranking.weighted_tau(SCORES, GT) == pytest.approx(scipy.stats.weightedtau(s, g).statistic)
    assert ranking.pearson(SCORES, GT) == pytest.approx(scipy.stats.pearsonr(s, g).statistic)


def test_hand_computed_values():
    # pairs: (a,b) discordant, (a,c) discordant, the other 8 concordant -> tau = (8 - 2) / 10
    assert ranking.kendall_tau(SCORES, GT) == pytest.approx(0.6)
    assert ranking.rel_at_k(SCORES, GT, 1) == pytest.approx(85 / 90)
    assert ranking.rel_at_k(SCORES, GT, 3) == pytest.approx(1.0)
    assert ranking.top1_regret(SCORES, GT) == pytest.approx(5.0)
    perfect = {m: v / 100 for m, v in GT.items()}
    assert ranking.weighted_tau(perfect, GT) == pytest.approx(1.0)
    assert ranking.weighted_pearson(perfect, GT) == pytest.approx(1.0)


def test_weighted_pearson_gt_rank_weights():
    s, g = vectors(SCORES, GT)
    w = np.array([5, 4, 3, 2, 1], dtype=float)     # a is best -> 5, ..., e -> 1
    sw, gw = s - np.average(s, weights=w), g - np.average(g, weights=w)
    expected = np.sum(w * sw * gw) / np.sqrt(np.sum(w * sw ** 2) * np.sum(w * gw ** 2))
    assert ranking.weighted_pearson(SCORES, GT) == pytest.approx(expected)
    # independent of the listing order
    rev = dict(reversed(list(SCORES.items())))
    assert ranking.weighted_pearson(rev, GT) == pytest.approx(expected)


def test_weighted_pearson_published_depends_on_order():
    rev = dict(reversed(list(SCORES.items())))
    s, g = vectors(rev, GT)
    w = np.arange(5, 0, -1, dtype=float)           # list position weights
    sw, gw = s - np.average(s, weights=w), g - np.average(g, weights=w)
    expected = np.sum(w * sw * gw) / np.sqrt(np.sum(w * sw ** 2) * np.sum(w * gw ** 2))
    assert ranking.weighted_pearson(rev, GT, published=True) == pytest.approx(expected)
    assert ranking.weighted_pearson(rev, GT, published=True) != pytest.approx(
        ranking.weighted_pearson(SCORES, GT, published=True))


def test_evaluate_ranking_keys():
    out = ranking.evaluate_ranking(SCORES, GT)
    assert list(out) == ["kendall_tau", "weighted_tau", "pearson", "weighted_pearson", "rel@1", "rel@3",
                         "top1_regret"]
    assert out["rel@1"] == ranking.rel_at_k(SCORES, GT, 1)


def test_mismatched_models_are_named():
    with pytest.raises(ValueError, match=r"no score for model\(s\) \['e'\]"):
        ranking.kendall_tau({m: SCORES[m] for m in "abcd"}, GT)
    with pytest.raises(ValueError, match=r"no ground truth for model\(s\) \['z'\]"):
        ranking.pearson(dict(SCORES, z=1.0), GT)
    with pytest.raises(ValueError, match="at least 2"):
        ranking.kendall_tau({"a": 1.0}, {"a": 2.0})
    assert ranking.rel_at_k({"a": 1.0}, {"a": 2.0}, 1) == 1.0 and ranking.top1_regret({"a": 1.0}, {"a": 2.0}) == 0.0
    with pytest.raises(ValueError, match="not finite"):
        ranking.weighted_tau(dict(SCORES, a=float("nan")), GT)
    with pytest.raises(ValueError, match="k must be"):
        ranking.rel_at_k(SCORES, GT, 0)
    with pytest.raises(ValueError, match="all scores values are equal"):
        ranking.pearson({m: 1.0 for m in GT}, GT)
