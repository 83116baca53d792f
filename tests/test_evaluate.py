"""The evaluation library and scripts end to end on small synthetic caches with a known ranking."""
import json

import numpy as np
import pandas as pd
import pytest

import evaluate_metric_caption
import evaluate_metric_cls
import metrics
from data.cache import CacheLayout, CacheMissingError, atomic_save_npy
from evaluation import DatasetInputs, DatasetResult, evaluate, stack_encoder_embeddings
from evaluation.cli import main
from evaluation.synthetic import write_synthetic_caches
from evaluation.tables import agreement_table, ranking_table, rankings, summary_table

# quality q (class signal in the features) decides the true ranking; ground truth is monotone in q
QUALITY = {"strong": 0.95, "good": 0.7, "weak": 0.45, "noise": 0.2}
DATASETS = {"alpha": (160, 4), "beta": (120, 3)}
ENCODERS = {"enc_a": 12, "enc_b": 12}
FAST_METRICS = ["emms", "logme", "leep"]


def _truth(datasets):
    return {d: {m: round(50 + 40 * q, 2) for m, q in QUALITY.items()} for d in datasets}


@pytest.fixture
def cls_cache(tmp_path):
    root = tmp_path / "cache"
    write_synthetic_caches(root, datasets=DATASETS, models={m: 20 for m in QUALITY}, quality=QUALITY,
                           encoders=ENCODERS, source_classes=30, no_head=["noise"], random_state=0)
    truth = tmp_path / "toy_zoo.json"
    truth.write_text(json.dumps({"about": "synthetic", "toy_zoo": _truth(DATASETS)}))
    return root, truth


def _cls_argv(root, truth, results, *extra):
    return ["--cache-dir", str(root), "--results-dir", str(results), "--ground-truth-file", str(truth),
            "--encoders", *ENCODERS, "--metrics", *FAST_METRICS, "--quiet", *extra]


def test_cls_script_end_to_end_and_resume(cls_cache, tmp_path, capsys):
    root, truth = cls_cache
    results = tmp_path / "results"
    assert main(evaluate_metric_cls.DEFAULTS, "test", _cls_argv(root, truth, results)) == 0
    out = capsys.readouterr().out
    first_scores = {}
    # 2 datasets x (4 models x 3 metrics - leep for the head-less model) = 22 scores
    assert "22 score(s) computed, 0 reused" in out
    assert "skipping metric 'leep' for model 'noise'" in out and "source_probs/alpha/noise.npy" in out
    for dataset in DATASETS:
        assert f"=== {dataset}" in out
        scores = first_scores[dataset] = pd.read_csv(results / "tables" / f"{dataset}_scores.csv", index_col=0)
        assert list(scores.index) == FAST_METRICS + ["ground_truth"]
        assert list(scores.columns) == list(QUALITY)
        assert np.isnan(scores.loc["leep", "noise"])
        table = pd.read_csv(results / "tables" / f"{dataset}_ranking.csv", index_col=0)
        for column in ("kendall_tau", "weighted_tau", "pearson", "rel@1", "rel@3", "seconds"):
            assert column in table.columns
        # features carry more class signal with q: the label-embedding and label metrics rank perfectly
        assert table.loc["emms", "kendall_tau"] == pytest.approx(1.0)
        assert table.loc["logme", "kendall_tau"] == pytest.approx(1.0)
        assert table.loc["logme", "rel@1"] == pytest.approx(1.0)
        assert table.loc["leep", "n_models"] == 3
        assert (table["seconds"] > 0).all()
    summary = pd.read_csv(results / "summary.csv", index_col=0)
    assert summary.loc["logme", "weighted_tau"] == pytest.approx(1.0)
    assert summary.loc["logme", "n_datasets"] == 2
    doc = json.loads((results / "results.json").read_text())
    assert doc["group"] == "toy_zoo" and doc["encoders"] == list(ENCODERS)
    assert doc["datasets"]["alpha"]["rankings"]["logme"] == list(QUALITY)
    assert doc["datasets"]["alpha"]["skipped"]["leep"].keys() == {"noise"}
    assert (results / "plots" / "alpha_scores_vs_truth.png").is_file()
    cache_before = (results / "scores" / "alpha.json").read_text()

    # second run: everything comes from the score cache, identical tables
    assert main(evaluate_metric_cls.DEFAULTS, "test", _cls_argv(root, truth, results)) == 0
    assert "0 score(s) computed, 22 reused" in capsys.readouterr().out
    assert (results / "scores" / "alpha.json").read_text() == cache_before
    for dataset in DATASETS:
        again = pd.read_csv(results / "tables" / f"{dataset}_scores.csv", index_col=0)
        pd.testing.assert_frame_equal(again, first_scores[dataset])


def test_reextracted_cache_recomputes_only_its_scores(cls_cache, tmp_path):
    root, _ = cls_cache
    kwargs = dict(datasets=["alpha"], models=list(QUALITY), metrics=FAST_METRICS, encoders=tuple(ENCODERS),
                  progress=False, log=lambda msg: None)
    first = evaluate(root, tmp_path / "res", **kwargs)
    assert (first.computed, first.reused) == (11, 0)
    layout = CacheLayout(root)
    feats = np.load(layout.features("alpha", "weak"))
    atomic_save_npy(layout.features("alpha", "weak"), feats[:, ::-1].copy())  # a re-extracted cache
    second = evaluate(root, tmp_path / "res", **kwargs)
    assert (second.computed, second.reused) == (2, 9)  # emms, logme of "weak"; leep reads no features
    # changing the encoders changes only the label-embedding metric's key
    third = evaluate(root, tmp_path / "res", **{**kwargs, "encoders": ("enc_a",)})
    assert (third.computed, third.reused) == (4, 7)


def test_missing_cache_is_named_before_any_work(cls_cache, tmp_path):
    root, truth = cls_cache
    layout = CacheLayout(root)
    layout.features("beta", "good").unlink()
    layout.label_embedding("beta", "enc_b").unlink()
    results = tmp_path / "results"
    with pytest.raises(CacheMissingError) as info:
        evaluate(root, results, datasets=["beta"], models=list(QUALITY), metrics=FAST_METRICS,
                 encoders=tuple(ENCODERS), progress=False, log=lambda msg: None)
    assert str(layout.features("beta", "good")) in str(info.value)
    assert str(layout.label_embedding("beta", "enc_b")) in str(info.value)
    assert not (results / "scores" / "beta.json").exists()
    # the script turns it into a clean exit naming the files
    with pytest.raises(SystemExit, match="features/beta/good.npy"):
        main(evaluate_metric_cls.DEFAULTS, "test", _cls_argv(root, truth, results, "--datasets", "beta"))


def test_without_ground_truth_ranks_and_compares_metrics(cls_cache, tmp_path, capsys):
    root, _ = cls_cache
    results = tmp_path / "nogt"
    argv = ["--cache-dir", str(root), "--results-dir", str(results), "--no-ground-truth", "--datasets", "alpha",
            "--models", *QUALITY, "--encoders", *ENCODERS, "--metrics", "emms", "logme", "--quiet"]
    assert main(evaluate_metric_cls.DEFAULTS, "test", argv) == 0
    out = capsys.readouterr().out
    assert "no ground truth" in out and "agreement between metrics" in out
    table = pd.read_csv(results / "tables" / "alpha_ranking.csv", index_col=0)
    assert "weighted_tau" not in table.columns
    assert set(table["top1_model"]) == {"strong"}
    agreement = pd.read_csv(results / "tables" / "alpha_agreement.csv", index_col=0)
    assert agreement.loc["emms", "logme"] == pytest.approx(1.0)
    assert (results / "plots" / "alpha_agreement.png").is_file()
    with pytest.raises(SystemExit, match="--models and --datasets"):
        main(evaluate_metric_cls.DEFAULTS, "test", ["--no-ground-truth", "--cache-dir", str(root)])


def test_caption_script_end_to_end(tmp_path, capsys):
    root = tmp_path / "cache"
    datasets = {"capset": (150, 6)}
    write_synthetic_caches(root, datasets=datasets, models={m: 24 for m in QUALITY}, quality=QUALITY,
                           encoders=ENCODERS, captions=True, random_state=1)
    assert not CacheLayout(root).labels("capset").exists()  # captioning sets have no labels
    truth = tmp_path / "toy_caption.json"
    truth.write_text(json.dumps({"toy_caption": {"capset": {m: 0.1 + 0.2 * q for m, q in QUALITY.items()}}}))
    results = tmp_path / "results"
    argv = ["--cache-dir", str(root), "--results-dir", str(results), "--ground-truth-file", str(truth),
            "--encoders", *ENCODERS, "--quiet", "--no-plots"]
    assert main(evaluate_metric_caption.DEFAULTS, "test", argv) == 0
    assert "12 score(s) computed" in capsys.readouterr().out
    table = pd.read_csv(results / "tables" / "capset_ranking.csv", index_col=0)
    assert list(table.index) == ["emms", "logme_flabel", "transrate_flabel"]
    assert table.loc["emms", "kendall_tau"] == pytest.approx(1.0)


def test_caption_task_rejects_label_metrics(tmp_path):
    with pytest.raises(ValueError, match="metric 'leep' needs \\['labels', 'source_probs'\\]"):
        evaluate(tmp_path, tmp_path / "r", datasets=["x"], models=["a", "b"], metrics=["leep"], task="caption",
                 encoders=("e",), progress=False)


def test_label_metric_without_encoders_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="metric 'emms' needs label embeddings"):
        evaluate(tmp_path, tmp_path / "r", datasets=["x"], models=["a", "b"], metrics=["emms"], progress=False)


def test_every_registered_metric_runs_through_the_runner(tmp_path):
    root = tmp_path / "cache"
    write_synthetic_caches(root, datasets={"tiny": (90, 3)}, models={m: 12 for m in QUALITY}, quality=QUALITY,
                           encoders=ENCODERS, source_classes=15, random_state=2)
    result = evaluate(root, tmp_path / "res", datasets=["tiny"], models=list(QUALITY), metrics=None,
                      encoders=tuple(ENCODERS), progress=False)
    r = result.datasets["tiny"]
    assert r.metrics == metrics.list_metrics()
    for name in r.metrics:
        assert set(r.scores[name]) == set(QUALITY), name
        assert all(np.isfinite(v) for v in r.scores[name].values()), name


# -- inputs -----------------------------------------------------------------------------------------

def test_inputs_are_per_sample_stacked_and_read_only(cls_cache):
    root, _ = cls_cache
    layout = CacheLayout(root)
    inputs = DatasetInputs(layout, "alpha", encoders=tuple(ENCODERS))
    got = inputs.for_metric(("features", "labels", "label_embeddings"), "good")
    y = np.load(layout.labels("alpha"))
    table_b = np.load(layout.label_embedding("alpha", "enc_b"))
    assert got["label_embeddings"].shape == (160, 12, 2)
    np.testing.assert_array_equal(got["label_embeddings"][:, :, 1], table_b[y])
    np.testing.assert_array_equal(got["labels"], y)
    for array in got.values():
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0


def test_inputs_reject_inconsistent_sample_counts(cls_cache):
    root, _ = cls_cache
    layout = CacheLayout(root)
    atomic_save_npy(layout.features("alpha", "weak"), np.zeros((7, 20), dtype=np.float32))
    inputs = DatasetInputs(layout, "alpha", encoders=tuple(ENCODERS))
    inputs.labels()
    with pytest.raises(ValueError, match="has 7 samples but other inputs of dataset 'alpha' have 160"):
        inputs.features("weak")


def test_stack_equal_widths_unchanged_and_mixed_widths_explicit():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    np.testing.assert_array_equal(stack_encoder_embeddings([a, b], encoders=["a", "b"]), np.stack([a, b], -1))
    c = rng.standard_normal((5, 3))
    try:
        from Label_embedding import stack_label_embeddings  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"a \(E=4\), c \(E=3\) have different widths"):
            stack_encoder_embeddings([a, c], encoders=["a", "c"])
    else:
        out = stack_encoder_embeddings([a, c], encoders=["a", "c"])
        assert out.shape[0] == 5 and out.shape[2] == 2
    with pytest.raises(ValueError, match="different sample counts"):
        stack_encoder_embeddings([a, rng.standard_normal((6, 4))], encoders=["a", "d"])


# -- tables -----------------------------------------------------------------------------------------

def _result(scores, truth=None, seconds=0.5):
    models = list(next(iter(scores.values())))
    return DatasetResult(dataset="d", models=models, metrics=list(scores), scores=scores,
                         seconds={k: {m: seconds for m in v} for k, v in scores.items()}, ground_truth=truth)


def test_ranking_table_known_values():
    truth = {"a": 90.0, "b": 80.0, "c": 70.0, "d": 60.0}
    r = _result({"same": {"a": 4, "b": 3, "c": 2, "d": 1}, "reverse": {"a": 1, "b": 2, "c": 3, "d": 4},
                 "swap_top": {"a": 3, "b": 4, "c": 2, "d": 1}}, truth)
    t = ranking_table(r)
    assert t.loc["same", "kendall_tau"] == pytest.approx(1.0)
    assert t.loc["same", "weighted_tau"] == pytest.approx(1.0)
    assert t.loc["reverse", "kendall_tau"] == pytest.approx(-1.0)
    assert t.loc["reverse", "rel@1"] == pytest.approx(60 / 90)
    assert t.loc["reverse", "rel@3"] == pytest.approx(80 / 90)
    assert t.loc["swap_top", "kendall_tau"] == pytest.approx(4 / 6)
    assert t.loc["swap_top", "rel@1"] == pytest.approx(80 / 90)
    assert t.loc["swap_top", "top1_model"] == "b"
    assert t.loc["same", "seconds"] == pytest.approx(2.0)
    assert rankings(r)["reverse"] == ["d", "c", "b", "a"]
    agree = agreement_table(r)
    assert agree.loc["same", "reverse"] == pytest.approx(-1.0) == agree.loc["reverse", "same"]
    assert np.allclose(np.diag(agree.to_numpy()), 1.0)


def test_summary_averages_over_datasets():
    truth = {"a": 3.0, "b": 2.0, "c": 1.0}
    good = _result({"m": {"a": 3, "b": 2, "c": 1}}, truth, seconds=1.0)
    bad = _result({"m": {"a": 1, "b": 2, "c": 3}}, truth, seconds=2.0)
    s = summary_table([good, bad])
    assert s.loc["m", "kendall_tau"] == pytest.approx(0.0)
    assert s.loc["m", "weighted_tau_std"] == pytest.approx(1.0)
    assert s.loc["m", "seconds"] == pytest.approx(9.0)
    assert s.loc["m", "n_datasets"] == 2


def test_non_finite_scores_give_nan_measures_not_a_crash():
    r = _result({"m": {"a": 1.0, "b": float("nan"), "c": 0.0}}, {"a": 3.0, "b": 2.0, "c": 1.0})
    t = ranking_table(r)
    assert np.isnan(t.loc["m", "kendall_tau"]) and t.loc["m", "top1_model"] == ""


def test_parallel_workers_give_the_same_scores_as_serial(cls_cache, tmp_path):
    """``n_jobs=2`` scores models in worker processes; every score, skip and note must match the
    serial run (the metrics are deterministic), and the caller's model order is kept."""
    root, truth = cls_cache
    kwargs = dict(datasets=list(DATASETS), models=list(QUALITY), metrics=["emms", "logme", "hscore", "leep"],
                  encoders=tuple(ENCODERS), ground_truth=_truth(DATASETS), progress=False, log=lambda _: None)
    serial = evaluate(root, tmp_path / "serial", n_jobs=1, **kwargs)
    parallel = evaluate(root, tmp_path / "parallel", n_jobs=2, **kwargs)
    for d in DATASETS:
        a, b = serial.datasets[d], parallel.datasets[d]
        assert a.scores == b.scores and a.skipped == b.skipped
        assert [list(v) for v in a.scores.values()] == [list(v) for v in b.scores.values()]
    assert parallel.computed == serial.computed == 2 * (4 * 4 - 1)
    with pytest.raises(ValueError, match="n_jobs"):
        evaluate(root, tmp_path / "bad", n_jobs=0, **kwargs)


def test_prepared_inputs_are_shared_per_model(cls_cache):
    root, _ = cls_cache
    inputs = DatasetInputs(CacheLayout(root), "alpha", encoders=tuple(ENCODERS))
    a = inputs.for_metric(("features", "label_embeddings"), "good", prepared=True)
    b = inputs.for_metric(("features", "labels"), "good", prepared=True)
    assert isinstance(a["features"], metrics.PreparedFeatures) and a["features"] is b["features"]
    assert isinstance(a["label_embeddings"], metrics.PreparedLabelEmbeddings)
    # class-name embeddings are indexed by the labels: 4 distinct rows for 160 samples
    assert a["label_embeddings"].grouped and a["label_embeddings"].rows.shape[0] == 4
    other = inputs.for_metric(("features",), "weak", prepared=True)["features"]
    assert other is not a["features"]
    np.testing.assert_array_equal(other.X, inputs.features("weak"))
