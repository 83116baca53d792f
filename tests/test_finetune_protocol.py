"""Protocol v2 of the fine-tuned ground truth: shared subsets and pipeline, adaptive lr search,
seeds, resume inside a pair, the linear probe, the cost projection (seconds on 2 cores)."""
import pickle

import numpy as np
import pytest
import torch

import finetuning.runner as runner
from finetuning import FinetuneConfig, ResultsStore, finetune_pair, prepare_inputs, run_benchmark, stratified_subsets
from finetuning.engine import ReducedResolution
from finetuning.probe import probe_accuracy, rank_agreement
from finetuning.runner import TimeBudgetExceeded, is_bracketed, next_lr
from finetuning.splits import protocol_subsets
from test_finetune import FAST, ColourDataset, CountingFactory, colour_getter, preprocess


# ---------------------------------------------------------------------------------------------
# subsets
# ---------------------------------------------------------------------------------------------
def test_protocol_subsets_sizes_caps_and_disjointness():
    y_train = np.repeat(np.arange(3), [30, 26, 40])
    y_test = np.repeat(np.arange(3), [12, 9, 50])
    cfg = FinetuneConfig(n_train_per_class=20, n_val_per_class=10, n_test_per_class=15)
    tr, va, te = protocol_subsets(y_train, y_test, cfg, name="toy")
    assert np.bincount(y_train[tr]).tolist() == [20, 20, 20]
    assert np.bincount(y_train[va]).tolist() == [6, 6, 6]        # capped: smallest class has 26 = 20 + 6
    assert np.bincount(y_test[te]).tolist() == [9, 9, 9]         # capped at the smallest test class
    assert not set(tr) & set(va)
    # the same draw as the first protocol (stratified_subsets with the config's seed)
    np.testing.assert_array_equal(tr, stratified_subsets(y_train, (20, 6), cfg.seed)[0])


def test_protocol_subsets_needs_one_validation_image_per_class():
    cfg = FinetuneConfig(n_train_per_class=26)
    with pytest.raises(ValueError, match="smallest class has 26 images.*26 training"):
        protocol_subsets(np.repeat(np.arange(3), [30, 26, 40]), np.repeat(np.arange(3), 5), cfg, name="toy")


# ---------------------------------------------------------------------------------------------
# adaptive learning-rate search (logic, with a fake trainer: accuracy is a function of the lr)
# ---------------------------------------------------------------------------------------------
def test_next_lr_and_bracketing():
    assert next_lr({1e-3: 50.0, 1e-4: 40.0}, 1e-3) == 1e-2          # top edge -> up a decade
    assert next_lr({1e-3: 30.0, 1e-4: 40.0}, 1e-4) == 1e-5          # bottom edge -> down
    assert next_lr({1e-2: 30.0, 1e-3: 50.0, 1e-4: 40.0}, 1e-3) is None
    assert next_lr({3e-3: 1.0}, 3e-3) == 0.03                       # clean decimal, no float noise
    assert next_lr({1.0: 50.0, 0.1: 40.0}, 1.0) is None              # would leave LR_LIMITS
    assert is_bracketed([1e-2, 1e-3, 1e-4], 1e-3) and not is_bracketed([1e-3, 1e-4], 1e-3)


@pytest.fixture
def fake_training(monkeypatch):
    """train_model only remembers the lr; the "accuracy" is a peaked function of log10(lr)."""
    def train(model, x, y, *, lr, **kw):
        model.lr = lr
        return [1.0]

    def accuracy(model, x, y, batch_size):
        return float(round(90 - 10 * abs(np.log10(model.lr) - np.log10(fake_training.peak)), 6))

    monkeypatch.setattr(runner, "train_model", train)
    monkeypatch.setattr(runner, "accuracy_percent", accuracy)
    return fake_training


@pytest.mark.parametrize("peak, ext, lrs_tried, best, bracketed", [
    (1e-3, 2, [1e-2, 1e-3, 1e-4], 1e-3, True),                     # interior at once: no extension
    (1e-1, 2, [1e-3, 1e-4, 1e-5, 1e-2, 1e-1], 1e-1, False),         # two extensions up, still at the edge
    (1e-6, 3, [1e-3, 1e-4, 1e-5, 1e-6, 1e-7], 1e-6, True),          # down until interior
    (1e-1, 0, [1e-3, 1e-4, 1e-5], 1e-3, False),                     # fixed grid (first protocol)
])
def test_search_extends_the_grid_until_the_best_value_is_interior(fake_training, peak, ext, lrs_tried, best,
                                                                  bracketed):
    fake_training.peak = peak
    first = [1e-2, 1e-3, 1e-4] if peak == 1e-3 else [1e-3, 1e-4, 1e-5]
    cfg = FinetuneConfig(**{**FAST, "lrs": first, "max_lr_extensions": ext, "n_seeds": 1})
    rec = finetune_pair("tiny_a", "colours", cfg, model_factory=CountingFactory(), dataset_getter=colour_getter,
                        progress=False)
    assert [r["lr"] for r in rec["per_lr"]] == pytest.approx(lrs_tried)
    assert rec["best_lr"] == pytest.approx(best) and rec["lr_bracketed"] is bracketed
    assert rec["test_acc_std"] is None and rec["test_acc_seeds"] == [rec["test_acc"]]


# ---------------------------------------------------------------------------------------------
# seeds, resume, deadline, exclusions (real tiny training)
# ---------------------------------------------------------------------------------------------
def test_seeds_at_the_chosen_lr_give_mean_and_std(tmp_path):
    cfg = FinetuneConfig(**{**FAST, "lrs": (1e-2,), "n_seeds": 3})
    rec = finetune_pair("tiny_b", "colours", cfg, model_factory=CountingFactory(), dataset_getter=colour_getter,
                        progress=False)
    seeds = rec["seed_runs"]
    assert [r["seed"] for r in seeds] == [0, 1, 2] and all(r["lr"] == 1e-2 for r in seeds)
    assert seeds[0] is rec["per_lr"][0] or seeds[0] == rec["per_lr"][0]   # the search run is seed 0
    assert len({tuple(r["train_loss"]) for r in seeds}) == 3              # the seed changes the run
    assert rec["test_acc_seeds"] == [r["test_acc"] for r in seeds]
    assert rec["test_acc"] == pytest.approx(np.mean(rec["test_acc_seeds"]))
    assert rec["test_acc_std"] == pytest.approx(np.std(rec["test_acc_seeds"], ddof=1))
    assert rec["seconds"] == pytest.approx(sum(r["seconds"] for r in seeds), abs=0.02)


def test_resume_inside_a_pair_and_deadline(tmp_path):
    import time

    cfg = FinetuneConfig(**{**FAST, "lrs": (1e-2, 1e-3), "n_seeds": 2})
    store = ResultsStore(tmp_path / "p.json", cfg)
    with pytest.raises(TimeBudgetExceeded):
        finetune_pair("tiny_a", "colours", cfg, model_factory=CountingFactory(), dataset_getter=colour_getter,
                      progress=False, store=store, deadline=time.time() - 1)
    first = CountingFactory()
    full = finetune_pair("tiny_a", "colours", cfg, model_factory=first, dataset_getter=colour_getter,
                         progress=False, store=store)
    assert len(first.calls) == 3                                   # 2 lrs + 1 more seed
    again = CountingFactory()
    reopened = ResultsStore(tmp_path / "p.json", cfg)              # every trial was persisted
    assert finetune_pair("tiny_a", "colours", cfg, model_factory=again, dataset_getter=colour_getter,
                         progress=False, store=reopened) == full
    assert again.calls == []


def test_a_stopped_run_counts_only_its_own_pairs(tmp_path, capsys):
    """The partial file holds a pair of another invocation; the stop message counts this run's."""
    import time

    cfg = FinetuneConfig(**{**FAST, "lrs": (1e-2,)})
    kw = dict(model_factory=CountingFactory(), dataset_getter=colour_getter, progress=False)
    run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, tmp_path / "t.json", tmp_path / "p.json", **kw)
    CountingFactory.widths["tiny_c"] = 2
    try:
        out = run_benchmark(["tiny_b", "tiny_c"], ["colours"], cfg, tmp_path / "u.json", tmp_path / "p.json",
                            deadline=time.time() - 1, **kw)
    finally:
        del CountingFactory.widths["tiny_c"]
    assert out is None and "; 1 of 2 pairs finished" in capsys.readouterr().out


def test_two_stores_on_one_file_keep_both_results(tmp_path):
    cfg = FinetuneConfig(**FAST)
    a, b = ResultsStore(tmp_path / "p.json", cfg), ResultsStore(tmp_path / "p.json", cfg)
    a.put({"model": "m1", "dataset": "d", "test_acc": 1.0})
    b.put({"model": "m2", "dataset": "d", "test_acc": 2.0})
    b.put_trial("m3", "d", 1e-3, 0, {"val_acc": 5.0})
    fresh = ResultsStore(tmp_path / "p.json", cfg)
    assert fresh.has("m1", "d") and fresh.has("m2", "d")
    assert fresh.get_trial("m3", "d", 1e-3, 0) == {"val_acc": 5.0} and fresh.get_trial("m3", "d", 1e-3, 1) is None


def test_run_benchmark_leaves_excluded_cells_empty(tmp_path):
    cfg = FinetuneConfig(**{**FAST, "lrs": (1e-2,)})
    factory = CountingFactory()
    factory.widths = {**factory.widths, "tiny_c": 6}
    table = run_benchmark(["tiny_a", "tiny_b", "tiny_c"], ["colours"], cfg, tmp_path / "v2.json", tmp_path / "p.json",
                          model_factory=factory, dataset_getter=colour_getter, progress=False, group="v2",
                          skip=lambda m, d: m == "tiny_c")
    assert "tiny_c" not in factory.calls
    assert set(table["v2"]["colours"]) == {"tiny_a", "tiny_b"} and table["group"] == "v2"
    assert table["excluded_cells"] == {"colours": ["tiny_c"]}


# ---------------------------------------------------------------------------------------------
# one pipeline for fine-tuning and extraction
# ---------------------------------------------------------------------------------------------
def test_reduced_resolution_is_the_fine_tuning_pipeline():
    ds = ColourDataset(2, seed=0)
    pipe = ReducedResolution(preprocess, 8, 4)
    x, _ = prepare_inputs(ds, [0, 3], preprocess, 8, 4)
    torch.testing.assert_close(torch.stack([pipe(ds[0][0]), pipe(ds[3][0])]), x, rtol=0, atol=0)
    assert x.shape == (2, 3, 8, 8)
    assert "resolution=8" in repr(pipe) and "multiple=4" in repr(pipe)
    assert repr(pickle.loads(pickle.dumps(ReducedResolution(torch.nn.Identity(), 8, 4)))) \
        == repr(ReducedResolution(torch.nn.Identity(), 8, 4))


def test_train_subset_holds_the_fine_tuning_training_images():
    from finetuning.protocol import protocol_indices, test_subset, train_subset

    cfg = FinetuneConfig(**FAST)
    tr, va, te = protocol_indices("colours", cfg, dataset_getter=colour_getter)
    sub = train_subset("colours", cfg, dataset_getter=colour_getter)
    assert list(sub.indices) == tr.tolist() and len(sub) == 3 * FAST["n_train_per_class"]
    assert list(test_subset("colours", cfg, dataset_getter=colour_getter).indices) == te.tolist()
    rec = finetune_pair("tiny_a", "colours", FinetuneConfig(**{**FAST, "lrs": (1e-2,)}), model_factory=CountingFactory(),
                        dataset_getter=colour_getter, progress=False)
    assert rec["n_train"] == tr.size and rec["n_val"] == va.size and rec["n_test"] == te.size


def test_protocol_features_are_the_fine_tuning_start_on_a_real_model():
    """EfficientNet-Lite0 at 112 px: the extractor the metrics use takes the same input tensors as
    fine-tuning and returns the input of the new head of the trainable network."""
    from PIL import Image

    from finetuning.protocol import TrainableFeatureModel, protocol_feature_model
    from models import create_trainable

    cfg = FinetuneConfig(resolution=112, size_multiple=14)
    fm = protocol_feature_model("efficientnet_lite0", cfg, device="cpu")
    assert fm.input_hw == (112, 112) and fm.num_source_classes == 1000
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)) for _ in range(2)]
    _, trainable_pre = create_trainable("efficientnet_lite0", 10)
    x_ft, _ = prepare_inputs([(im, 0) for im in imgs], [0, 1], trainable_pre, cfg.resolution, cfg.size_multiple)
    x_ex = torch.stack([fm.preprocess(im) for im in imgs])
    torch.testing.assert_close(x_ex, x_ft, rtol=0, atol=0)
    head_input = TrainableFeatureModel("efficientnet_lite0", fm.preprocess, (112, 112))
    torch.testing.assert_close(fm.features(x_ex), head_input.features(x_ex), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the linear probe and the cost projection
# ---------------------------------------------------------------------------------------------
def test_probe_separates_informative_features_and_not_noise():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3, 20))
    y, yt = np.repeat(np.arange(3), 30), np.repeat(np.arange(3), 40)
    x, xt = mu[y] + 0.5 * rng.normal(size=(90, 20)), mu[yt] + 0.5 * rng.normal(size=(120, 20))
    x_copy = x.copy()
    good = probe_accuracy(x, y, xt, yt, folds=3)
    np.testing.assert_array_equal(x, x_copy)
    assert good["test_acc"] > 95 and good["C"] in good["cs"] and good["folds"] == 3
    noise = probe_accuracy(rng.normal(size=(90, 20)), y, rng.normal(size=(120, 20)), yt, folds=3)
    assert noise["test_acc"] < 60
    with pytest.raises(ValueError, match="5-fold probe needs"):
        probe_accuracy(x[:12], y[:12], xt, yt)
    with pytest.raises(ValueError, match="non-finite"):
        probe_accuracy(np.full((90, 20), np.nan), y, xt, yt, folds=3)


def test_rank_agreement_known_values():
    a = {"m1": 1.0, "m2": 2.0, "m3": 3.0, "m4": 4.0}
    assert rank_agreement(a, {m: 10 * v for m, v in a.items()}) == pytest.approx(1.0)
    assert rank_agreement(a, {m: -v for m, v in a.items()}) == pytest.approx(-1.0)
    assert rank_agreement(a, {"m1": 1.0, "m2": 2.0}) is None          # < 3 common models
    assert rank_agreement(a, {"m1": 1.0, "m2": 1.0, "m3": 1.0}) is None


def test_cost_projection():
    from finetuning.cost import project_table, time_run

    cfg = FinetuneConfig(**{**FAST, "lrs": (1e-2, 1e-3, 1e-4), "n_seeds": 3})
    t = time_run("tiny_a", cfg, num_classes=3, n_images=8, model_factory=CountingFactory())
    assert t["input_size"] == [32, 32] and t["train_s_per_img"] > 0 and t["run_s"] > t["build_s"]
    proj = project_table({"a": 10.0}, {"d10": 10, "d3": 3}, cfg, extensions=1)
    assert proj["runs_per_cell"] == 6 and proj["total_s"] == pytest.approx(10 * 6 * 1.3)


def test_run_probe_end_to_end_on_real_models(tmp_path, monkeypatch):
    """Two packaged OCR networks on a few texture patches: protocol extraction (train and test
    caches), probe, agreement, and the group loads through data.ground_truth."""
    import data.ground_truth as gt
    from data.ground_truth import load_ground_truth, register_ground_truth_file
    from finetuning.probe import PROBE_GROUP, run_probe

    monkeypatch.setattr(gt, "_REGISTERED", {})         # the registration below must not leak

    cfg = FinetuneConfig(resolution=112, size_multiple=14, n_train_per_class=6, n_val_per_class=2,
                         n_test_per_class=5)
    models = ["ocr_cls", "ocr_det"]
    ref = {"textures": {"ocr_cls": 60.0, "ocr_det": 70.0}}
    doc = run_probe(models, ["textures"], cfg, tmp_path / "cache", tmp_path / "probe.json", references={"ref": ref},
                    folds=3, progress=False, device="cpu", log=lambda msg: None)
    runs = doc["runs"]["textures"]
    assert set(runs) == set(models)
    assert all(r["n_train"] == 18 and r["n_test"] == 15 for r in runs.values())
    assert all(0 <= v <= 100 for v in doc[PROBE_GROUP]["textures"].values())
    assert doc["agreement"]["textures"]["ref"] == {"kendall_tau": None, "models": models}   # 2 models: no tau
    assert (tmp_path / "cache" / "train").is_dir() and (tmp_path / "cache" / "test").is_dir()
    assert load_ground_truth(register_ground_truth_file(tmp_path / "probe.json")) == doc[PROBE_GROUP]
