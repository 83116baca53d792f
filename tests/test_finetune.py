"""Tests of the fine-tuning protocol (finetuning/) on a tiny synthetic task: seconds on 2 cores."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from finetuning import (FinetuneConfig, ResultsStore, build_table, finetune_pair, prepare_inputs,
                        reduced_size, run_benchmark, select_best_lr, stratified_subsets, train_model,
                        warmup_cosine_lambda)
from finetuning.engine import build_optimizer, memory_format_of, use_channels_last


# ---------------------------------------------------------------------------------------------
# fakes: a colour-coded image dataset and a tiny CNN "zoo"
# ---------------------------------------------------------------------------------------------
class ColourDataset:
    """Class c = noisy 16x16 image whose channel c is brighter (3 classes)."""

    classes = ["red", "green", "blue"]

    def __init__(self, n_per_class: int, seed: int):
        rng = np.random.default_rng(seed)
        self.targets = np.repeat(np.arange(3), n_per_class)
        imgs = rng.uniform(0, 150, size=(self.targets.size, 16, 16, 3))
        imgs[np.arange(self.targets.size), :, :, self.targets] += 70
        self.images = imgs.clip(0, 255).astype(np.uint8)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return Image.fromarray(self.images[i]), int(self.targets[i])


def colour_getter(name, split):
    if name != "colours":
        raise KeyError(name)
    return ColourDataset(20, seed=0 if split == "train" else 1)


def preprocess(img):
    return (torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) - 127.5) / 127.5


class TinyNet(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class CountingFactory:
    widths = {"tiny_a": 4, "tiny_b": 8}

    def __init__(self):
        self.calls = []

    def __call__(self, name, num_classes):
        self.calls.append(name)
        return TinyNet(num_classes, self.widths[name]), preprocess


FAST = dict(epochs=6, resolution=None, n_train_per_class=8, n_val_per_class=6, n_test_per_class=10,
            batch_size=8, num_threads=1, warmup_fraction=0.0)


# ---------------------------------------------------------------------------------------------
# protocol pieces
# ---------------------------------------------------------------------------------------------
def test_stratified_subsets_disjoint_exact_deterministic():
    y = np.repeat(np.arange(4), [10, 12, 9, 15])
    y_copy = y.copy()
    a, b = stratified_subsets(y, (5, 4), random_state=3)
    np.testing.assert_array_equal(y, y_copy)
    assert np.bincount(y[a]).tolist() == [5] * 4 and np.bincount(y[b]).tolist() == [4] * 4
    assert not set(a) & set(b)
    a2, b2 = stratified_subsets(y, (5, 4), random_state=3)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    a3, _ = stratified_subsets(y, (5, 4), random_state=4)
    assert not np.array_equal(a, a3)


def test_stratified_subsets_rejects_small_class():
    with pytest.raises(ValueError, match="class 2 has 9 samples.*10 per class"):
        stratified_subsets(np.repeat(np.arange(3), [10, 12, 9]), (6, 4), 0, name="toy")


@pytest.mark.parametrize("h, w, r, m, expected", [
    (224, 224, 64, 1, (64, 64)),
    (48, 320, 64, 1, (48, 320)),        # OCR-like input already below r: native
    (224, 448, 112, 1, (112, 224)),     # aspect ratio kept
    (224, 224, 70, 14, (70, 70)),       # multiple of a ViT patch
    (260, 260, 64, 32, (64, 64)),
    (224, 224, None, 1, (224, 224)),
])
def test_reduced_size(h, w, r, m, expected):
    assert reduced_size(h, w, r, m) == expected


def test_resize_commutes_with_normalisation():
    """prepare_inputs resizes after the model's normalisation; for a per-channel affine map this
    equals normalising the resized image (the documented "resize to R px, then normalise")."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    mean, std = torch.tensor([0.4, 0.5, 0.6])[:, None, None], torch.tensor([0.2, 0.3, 0.25])[:, None, None]
    raw = lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
    x, _ = prepare_inputs([(img, 0)], [0], lambda im: (raw(im) - mean) / std, resolution=16)
    resized, _ = prepare_inputs([(img, 0)], [0], raw, resolution=16)
    assert x.shape == (1, 3, 16, 16)
    torch.testing.assert_close(x[0], (resized[0] - mean) / std, atol=1e-5, rtol=1e-5)


def test_warmup_cosine_schedule_values():
    f = warmup_cosine_lambda(total_steps=10, warmup_steps=2)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.5)   # half way through the cosine
    assert f(10) == pytest.approx(0.0)


def test_optimizer_exempts_biases_and_norms_from_weight_decay():
    net = TinyNet(3, 4)
    opt = build_optimizer(net, "adamw", 1e-3, 0.05)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    expected = {id(net.body[0].weight), id(net.head.weight)}   # conv kernel + head matrix only
    assert decayed == expected
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(TinyNet(3, 4), "lion", 1e-3, 0.0)


@pytest.mark.parametrize("bad, match", [
    (dict(lrs=()), "at least one"), (dict(lrs=(1e-3, -1.0)), "finite positive"),
    (dict(lrs=(1e-3, 1e-3)), "duplicates"), (dict(epochs=0), "epochs"),
    (dict(resolution=4), "resolution"), (dict(resolution=64, size_multiple=14), "multiple"),
    (dict(optimizer="lion"), "unknown optimizer"), (dict(warmup_fraction=1.0), "warmup"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        FinetuneConfig(**bad)


def test_config_roundtrip():
    cfg = FinetuneConfig(lrs=[1e-3, 1e-4], epochs=3)
    assert cfg.lrs == (1e-3, 1e-4)
    assert FinetuneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown FinetuneConfig keys"):
        FinetuneConfig.from_dict({"epoch": 3})


def test_select_best_lr_known_values_and_ties():
    assert select_best_lr({1e-2: 40.0, 1e-3: 75.0, 1e-4: 60.0}) == 1e-3
    assert select_best_lr({3e-4: 70.0, 1e-3: 70.0}) == 3e-4       # tie: first in grid order
    with pytest.raises(ValueError):
        select_best_lr({})
    with pytest.raises(ValueError, match="nan"):
        select_best_lr({1e-3: float("nan")})


# ---------------------------------------------------------------------------------------------
# end-to-end on the tiny task
# ---------------------------------------------------------------------------------------------
def test_training_reduces_loss_and_beats_chance():
    torch.manual_seed(0)
    train, test = colour_getter("colours", "train"), colour_getter("colours", "test")
    x, y = prepare_inputs(train, range(len(train)), preprocess, None)
    xt, yt = prepare_inputs(test, range(len(test)), preprocess, None)
    net = TinyNet(3, 8)
    losses = train_model(net, x, y, lr=1e-2, epochs=15, batch_size=10, weight_decay=0.0)
    assert losses[-1] < 0.5 * losses[0]
    from finetuning import accuracy_percent
    assert accuracy_percent(net, xt, yt) > 100 / 3 + 30


def test_channels_last_training_matches_contiguous():
    train = colour_getter("colours", "train")
    x, y = prepare_inputs(train, range(len(train)), preprocess, None)
    runs = {}
    for fmt in ("contiguous", "channels_last"):
        torch.manual_seed(0)
        net = TinyNet(3, 8)
        # a bias in front of batch norm gets only rounding noise as gradient, which AdamW scales up
        # to lr-sized steps: any change of summation order moves it (and the running mean)
        net.body[0].register_parameter("bias", None)
        assert memory_format_of(net) == torch.contiguous_format
        if fmt == "channels_last":
            assert use_channels_last(net) == "channels_last"
            assert memory_format_of(net) == torch.channels_last
        losses = train_model(net, x, y, lr=1e-2, epochs=3, batch_size=10, weight_decay=0.0,
                             generator=torch.Generator().manual_seed(1))
        runs[fmt] = (losses, net.eval()(x[:7]).detach())
    np.testing.assert_allclose(runs["contiguous"][0], runs["channels_last"][0], rtol=1e-4)
    torch.testing.assert_close(runs["contiguous"][1], runs["channels_last"][1], rtol=1e-4, atol=1e-5)
    assert x.is_contiguous()                                       # the caller's tensor is untouched
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    assert use_channels_last(mlp) == "contiguous" and memory_format_of(mlp) == torch.contiguous_format


def test_finetune_pair_picks_best_validation_lr():
    cfg = FinetuneConfig(lrs=(1e-7, 3e-2), **FAST)
    rec = finetune_pair("tiny_b", "colours", cfg, model_factory=CountingFactory(),
                        dataset_getter=colour_getter, progress=False)
    by_lr = {r["lr"]: r for r in rec["per_lr"]}
    assert set(by_lr) == {1e-7, 3e-2}
    assert by_lr[3e-2]["val_acc"] > by_lr[1e-7]["val_acc"]      # lr 1e-7 cannot learn in 6 epochs
    assert rec["best_lr"] == 3e-2
    assert rec["val_acc"] == by_lr[3e-2]["val_acc"] and rec["test_acc"] == by_lr[3e-2]["test_acc"]
    assert rec["test_acc"] > 100 / 3 + 20
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (24, 18, 30)
    assert by_lr[3e-2]["train_loss"][-1] < by_lr[3e-2]["train_loss"][0]
    assert {r["memory_format"] for r in rec["per_lr"]} == {"channels_last"}     # TinyNet has a Conv2d


def test_finetune_pair_is_deterministic():
    cfg = FinetuneConfig(lrs=(1e-2,), **FAST)
    kw = dict(model_factory=CountingFactory(), dataset_getter=colour_getter, progress=False)
    a, b = finetune_pair("tiny_a", "colours", cfg, **kw), finetune_pair("tiny_a", "colours", cfg, **kw)
    assert a["per_lr"][0]["train_loss"] == b["per_lr"][0]["train_loss"]
    assert a["test_acc"] == b["test_acc"]


def test_run_benchmark_resumes_and_writes_schema(tmp_path):
    from data.ground_truth import load_ground_truth, register_ground_truth_file

    cfg = FinetuneConfig(lrs=(1e-2,), **FAST)
    out, partial = tmp_path / "offline_zoo.json", tmp_path / "partial.json"
    first = CountingFactory()
    # a "killed" run: only tiny_a finished
    ResultsStore(partial, cfg).put(finetune_pair("tiny_a", "colours", cfg, model_factory=first,
                                                 dataset_getter=colour_getter, progress=False))
    assert first.calls == ["tiny_a"]
    second = CountingFactory()
    table = run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, out, partial, model_factory=second,
                          dataset_getter=colour_getter, progress=False)
    assert second.calls == ["tiny_b"]                    # the finished pair was skipped
    third = CountingFactory()
    again = run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, out, partial, model_factory=third,
                          dataset_getter=colour_getter, progress=False)
    assert third.calls == [] and again == table

    doc = json.loads(out.read_text())
    for key in ("about", "protocol", "dataset_measure", "elapsed_seconds", "offline_zoo", "runs"):
        assert key in doc
    assert doc["dataset_measure"] == {"colours": "accuracy"}
    assert FinetuneConfig.from_dict(doc["protocol"]) == cfg
    assert set(doc["offline_zoo"]["colours"]) == {"tiny_a", "tiny_b"}
    for model, value in doc["offline_zoo"]["colours"].items():
        run = doc["runs"]["colours"][model]
        assert 0 <= value <= 100 and value == pytest.approx(run["test_acc"], abs=0.01)
        assert {"best_lr", "val_acc", "test_acc", "seed", "per_lr", "seconds"} <= set(run)
    # the sum of the runs' own times, rounded to 0.1 s (two tiny runs can round to 0.0 on an idle machine)
    runs = doc["runs"]["colours"].values()
    assert all(r["seconds"] > 0 for r in runs)
    assert doc["elapsed_seconds"] == round(sum(r["seconds"] for r in runs), 1)
    group = register_ground_truth_file(out)
    assert group == "offline_zoo"
    assert load_ground_truth(group) == doc["offline_zoo"]


def test_finished_cells_of_a_partial_file_with_their_seeds(tmp_path):
    from finetuning.results import read_finished, read_results
    cfg = FinetuneConfig(lrs=(1e-2,), n_seeds=2, **{k: v for k, v in FAST.items()})
    partial = tmp_path / "partial.json"
    rec = finetune_pair("tiny_a", "colours", cfg, model_factory=CountingFactory(), dataset_getter=colour_getter,
                        progress=False)
    ResultsStore(partial, cfg).put(rec)
    config, table = read_results(partial)
    assert read_finished(partial)[:2] == (config, table)
    seeds = read_finished(partial)[2]
    assert config == cfg and table == {"colours": {"tiny_a": rec["test_acc"]}}
    assert seeds == {"colours": {"tiny_a": rec["test_acc_seeds"]}} and len(rec["test_acc_seeds"]) == 2
    assert np.mean(seeds["colours"]["tiny_a"]) == pytest.approx(table["colours"]["tiny_a"])


def test_markdown_table_of_a_partial_file(tmp_path):
    """mean ± std at the chosen lr per cell, "—" for an unfinished one, rows / columns as asked."""
    from finetuning.results import markdown_table
    cfg = FinetuneConfig(lrs=(1e-2,), **FAST)
    partial = tmp_path / "partial.json"
    store = ResultsStore(partial, cfg)
    store.put({"model": "a", "dataset": "d1", "test_acc": 91.25, "test_acc_std": 0.5, "best_lr": 3e-4})
    store.put({"model": "b", "dataset": "d1", "test_acc": 80.0})
    store.put({"model": "b", "dataset": "d2", "test_acc": 70.04, "test_acc_std": 1.0, "best_lr": 0.003})
    assert markdown_table(partial, models=["b", "a"], datasets=["d2", "d1"]).splitlines() == [
        "| model | d2 | d1 |", "|---|---|---|",
        "| b | 70.0 ± 1.0 (0.003) | 80.0 |",
        "| a | — | 91.2 ± 0.5 (0.0003) |"]
    assert markdown_table(partial, digits=2).splitlines()[2] == "| a | 91.25 ± 0.50 (0.0003) | — |"
    with pytest.raises(ValueError, match="no finished cell on d3"):
        markdown_table(partial, datasets=["d3"])


def test_resume_refuses_a_different_protocol(tmp_path):
    cfg = FinetuneConfig(lrs=(1e-2,), **FAST)
    partial = tmp_path / "partial.json"
    ResultsStore(partial, cfg).put({"model": "tiny_a", "dataset": "colours", "test_acc": 50.0})
    store = ResultsStore(partial, cfg)
    assert store.has("tiny_a", "colours")
    doc = store.document()
    assert doc == json.loads(partial.read_text()) and doc["runs"]["colours"]["tiny_a"]["test_acc"] == 50.0
    doc["runs"].clear()                                     # a copy: the store is untouched
    assert store.has("tiny_a", "colours")
    with pytest.raises(ValueError, match="another protocol"):
        ResultsStore(partial, FinetuneConfig(lrs=(1e-3,), **FAST))


def test_build_table_rejects_mislabelled_record():
    cfg = FinetuneConfig(**FAST)
    rec = {"model": "a", "dataset": "d", "test_acc": 50.0, "num_classes": 2, "seconds": 1.0}
    with pytest.raises(ValueError, match="is for"):
        build_table({("b", "d"): rec}, cfg)


@pytest.mark.parametrize("n, bs, sizes", [(33, 16, [16, 16]), (34, 16, [16, 16, 2]), (32, 16, [16, 16]),
                                          (1, 16, [1]), (17, 16, [16])])
def test_batches_cover_samples_and_drop_a_single_trailing_one(n, bs, sizes):
    from finetuning.engine import _batches
    batches = _batches(n, bs, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == sizes
    assert len(torch.cat(batches).unique()) == sum(sizes)



def test_run_epochs_steps_every_batch_and_reports_mean_loss():
    """The shared loop: each epoch one shuffle of range(n); the loss of epoch e is the sample-weighted
    mean of its batch losses; ``drop_single=False`` keeps a trailing batch of one (head fitting)."""
    from finetuning.engine import run_epochs

    w = nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.0)                     # lr 0: the losses below stay exact
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    seen: list = []

    def batch_loss(b):
        seen.append(b.clone())
        return w + b.float().mean()

    losses = run_epochs(17, batch_loss, opt, sched, epochs=2, batch_size=4,
                        generator=torch.Generator().manual_seed(0), lr=0.0, drop_single=False)
    assert [len(b) for b in seen] == [4, 4, 4, 4, 1] * 2
    for e in range(2):
        assert sorted(torch.cat(seen[5 * e:5 * e + 5]).tolist()) == list(range(17))
    assert losses == pytest.approx([8.0, 8.0])              # mean of 0..16 either way
    assert sched.last_epoch == 10                           # one schedule step per batch

    with pytest.raises(FloatingPointError, match="lr=0.5"):
        run_epochs(4, lambda b: w + float("nan"), opt, sched, epochs=1, batch_size=2,
                   generator=torch.Generator().manual_seed(0), lr=0.5)

def test_check_input_size_names_the_model_and_size():
    from finetuning.engine import check_input_size

    class NeedsBig(nn.Module):
        def forward(self, x):
            return nn.functional.max_pool2d(x, 8).flatten(1)[:, :3]

    check_input_size(TinyNet(3, 4), torch.zeros(4, 3, 8, 8), 3)
    with pytest.raises(ValueError, match=r"toy does not accept \(3, 4, 4\) inputs"):
        check_input_size(NeedsBig(), torch.zeros(4, 3, 4, 4), 3, name="toy")
    with pytest.raises(ValueError, match="expected \\(2, 5\\)"):
        check_input_size(TinyNet(3, 4), torch.zeros(4, 3, 8, 8), 5, name="toy")


def test_table_progress_counts_cells_and_prices_what_is_left():
    from finetuning.cost import format_progress, table_progress
    cfg = FinetuneConfig(lrs=(1e-3, 1e-2), n_seeds=2, **{k: v for k, v in FAST.items()})   # 2 + 1 + 1 = 4 runs/cell
    trial = lambda s: {"seconds": s}                                                   # noqa: E731
    doc = {"runs": {"a": {"m1": {}}},
           "trials": {"a": {"m1": {"x": trial(10.0), "y": trial(30.0)}, "m2": {"x": trial(40.0)}}}}
    skip = lambda m, d: m == "m3" and d == "b"                                          # noqa: E731
    out = table_progress(doc, ["m1", "m2", "m3"], {"a": 5, "b": 10}, cfg, skip=skip)
    assert out["cells"] == {"a": {"m1": "done", "m2": "started", "m3": "todo"},
                            "b": {"m1": "todo", "m2": "todo", "m3": "excluded"}}
    assert out["counts"] == {"done": 1, "started": 1, "todo": 3, "excluded": 1}
    # per 10-class run: m1 median(20, 60) = 40 s, m2 80 s (dataset a has 5 classes)
    assert out["run_s"] == {"m1": 40.0, "m2": 80.0}
    # left: m2 on a 3 runs x 80 x 0.5, m1 on b 4 x 40, m2 on b 4 x 80; m3 never ran: unpriced
    assert out["left_s"] == 3 * 80 * 0.5 + 4 * 40 + 4 * 80 and out["unpriced"] == ["m3"]
    text = format_progress(out)
    assert text.startswith("1 of 5 cells done (1 started, 3 not started, 1 excluded)") and "m3" in text
    # runs of the current code (they record their precision) price the model once there are any
    doc["trials"]["a"]["m2"]["z"] = {"seconds": 10.0, "precision": "bf16"}
    assert table_progress(doc, ["m1", "m2", "m3"], {"a": 5, "b": 10}, cfg, skip=skip)["run_s"] == {"m1": 40.0, "m2": 20.0}
