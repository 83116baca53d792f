"""evaluation.selection_report: ties at the tables' precision, a stated tie-break, order independence."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.runner import DatasetResult
from evaluation.selection_report import format_selection, selection_table, tie_rank


def _result(scores, models=None, skipped=None):
    models = list(models or next(iter(scores.values())).keys())
    metrics = list(scores)
    return DatasetResult(dataset="d", models=models, metrics=metrics,
                         scores={k: dict(v) for k, v in scores.items()},
                         seconds={k: {m: 0.0 for m in v} for k, v in scores.items()}, skipped=skipped or {})


def test_tie_rank_uses_the_tables_precision():
    assert tie_rank({"a": 1.0, "b": 1.0 + 1e-13, "c": 0.5, "d": float("nan")}) == {"a": 1, "b": 1, "c": 3}
    assert tie_rank({"a": 0.0, "b": -0.0, "c": -1e-3}) == {"a": 1, "b": 1, "c": 3}
    assert tie_rank({"a": 1.0, "b": 1.0 + 1e-6}) == {"b": 1, "a": 2}


def test_primary_tie_is_reported_and_decided_by_the_stated_rule():
    # D >= N: emms saturates at 0 for two models and sfda at 1.0 for all three
    scores = {"emms": {"m1": 0.0, "m2": 0.0, "m3": -2.0},
              "logme": {"m1": -1.0, "m2": 0.5, "m3": 0.1},
              "sfda": {"m1": 1.0, "m2": 1.0, "m3": 1.0}}
    for models in (["m1", "m2", "m3"], ["m2", "m1", "m3"], ["m3", "m2", "m1"]):
        table = selection_table(_result(scores, models), primary="emms")
        assert list(table.index) == ["m2", "m1", "m3"]
        assert table["rank"].tolist() == [1, 2, 3] and not table["tied"].any()
        assert table["rank_emms"].tolist() == [1, 1, 3] and table["rank_sfda"].tolist() == [1, 1, 1]
        assert table.loc["m2", "decided_by"] == "mean rank over logme"
        text = format_selection(table, primary="emms")
        assert "emms cannot separate m1, m2" in text
        assert "Tie-break: mean rank over the other metrics that scored them all (logme): m2 1, m1 3." in text
        assert "Recommendation: m2 (tied first by emms, ahead on the mean rank of logme;" in text
        assert "ranked first by emms" not in text
        assert "Runner-up: m1." in text
        assert "1 of 1 other metric(s) also rank it first: logme)" in text
        assert "Note: sfda gives every model the same score, so it ranks nothing here" in text


def test_unbreakable_tie_is_a_tie_not_a_pick(tmp_path):
    scores = {"emms": {"a": 0.0, "b": 0.0, "c": -1.0}, "sfda": {"a": 1.0, "b": 1.0, "c": 1.0},
              "logme": {"a": 0.5, "b": 0.5, "c": 1.0}}
    table = selection_table(_result(scores, ["b", "c", "a"]), primary="emms")
    assert list(table.index) == ["a", "b", "c"] and table["rank"].tolist() == [1, 1, 3]
    assert table["tied"].tolist() == [True, True, False] and table.loc["a", "decided_by"] == "tie"
    text = format_selection(table, primary="emms")
    assert "No single recommendation: a, b are tied" in text and "Recommendation:" not in text
    assert "the mean rank does not separate them either" in text
    rank_col = text.splitlines()[2].split()            # the printed table marks shared ranks
    assert "1=" in rank_col
    table.to_csv(tmp_path / "s.csv")
    back = pd.read_csv(tmp_path / "s.csv", index_col=0)
    assert back["rank"].tolist() == [1, 1, 3] and back["tied"].tolist() == [True, True, False]


def test_tie_without_other_metrics_says_nothing_breaks_it():
    for scores in ({"emms": {"a": 0.0, "b": 0.0}},
                   {"emms": {"a": 0.0, "b": 0.0}, "sfda": {"a": 1.0, "b": 1.0}},     # sfda ranks nothing
                   {"emms": {"a": 0.0, "b": 0.0}, "leep": {"a": 1.0, "b": float("nan")}}):
        table = selection_table(_result(scores), primary="emms")
        text = format_selection(table, primary="emms")
        assert "nothing breaks the tie" in text and "No single recommendation: a, b" in text


def test_primary_not_scored_is_said():
    scores = {"leep": {"a": -1.0, "b": -0.5, "c": float("nan")}, "logme": {"a": 1.0, "b": 2.0, "c": 3.0}}
    table = selection_table(_result(scores, ["a", "b", "c", "d"],
                                    skipped={"leep": {"d": "no source head"}}), primary="leep")
    assert list(table.index) == ["b", "a", "c", "d"] and math.isnan(table.loc["c", "rank"])
    text = format_selection(table, primary="leep")
    assert "Recommendation: b (ranked first by leep; 0 of 1 other metric(s) also rank it first)" in text
    assert "Not ranked: c (not scored by leep: non-finite score nan)" in text
    assert "Not ranked: d (not scored by leep: no source head)" in text
    none = selection_table(_result({"leep": {"a": float("nan")}}), primary="leep")
    assert "No model could be scored by leep" in format_selection(none, primary="leep")


_VALUES = st.sampled_from([0.0, 0.0, 1.0, 1.0 + 1e-14, -1.0, 0.5, float("nan")])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_models=st.integers(2, 6), n_metrics=st.integers(1, 4))
def test_permuting_models_never_changes_ranks_or_recommendation(data, n_models, n_metrics):
    models = [f"m{i}" for i in range(n_models)]
    metrics = [f"k{j}" for j in range(n_metrics)]
    scores = {k: {m: data.draw(_VALUES) for m in models} for k in metrics}
    perm = data.draw(st.permutations(models))
    a = selection_table(_result(scores, models), primary="k0")
    b = selection_table(_result(scores, perm), primary="k0")
    pd.testing.assert_frame_equal(a, b)
    assert format_selection(a, primary="k0") == format_selection(b, primary="k0")
    # shared ranks are exactly the ties of the rule
    ranked = a[a["rank"].notna()]
    assert (ranked["rank"].value_counts() > 1).reindex(ranked["rank"]).to_numpy().tolist() == ranked["tied"].tolist()
    if ranked.empty:
        return
    assert ranked["rank"].min() == 1 and np.all(np.diff(ranked["rank"].to_numpy()) >= 0)


def test_unknown_primary_is_an_error():
    with pytest.raises(ValueError, match="primary metric 'x' was not computed"):
        selection_table(_result({"emms": {"a": 0.0}}), primary="x")
