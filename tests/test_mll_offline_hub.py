"""The heterogeneous offline hub: easy-VQA recipe, aligned models (ridge maths, fit data hygiene,
shared caches), the per-class oracle and the heterogeneity table."""
import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import data
import mll
from mll import aligned
from mll.aligned import (ALIGNED_SPECS, FIT_POOL_PER_CLASS, FIT_SPLIT, AlignedSpec, AlignedVLM, FitPart, assert_not_fitted_on,
                         fit_pool, fit_ridge_alignment)
from mll.heterogeneity import heterogeneity_table, per_class_oracle_models
from mll.tasks import TargetTask, offline_target
from mll.vlm import ConSEVLM, CONSE_CONFIGS, list_vlms


# -- easy-VQA --------------------------------------------------------------------------------------
def test_easyvqa_recipe_labels_match_the_answers():
    import easy_vqa
    for name, words in (("easyvqa_shapes", {"circle", "rectangle", "triangle"}),
                        ("easyvqa_colors", {"black", "blue", "brown", "gray", "green", "red", "teal", "yellow"})):
        train, test = data.get_dataset(name, "train"), data.get_dataset(name, "test")
        assert set(train.classes) == words and list(train.classes) == sorted(words)
        assert len(train) > 3000 and len(test) > 700
        assert np.bincount(test.targets).min() > 80                  # every class present
        image, label = test[0]
        assert image.size == (64, 64) and image.mode == "RGB"
    # recompute one scene's label by hand from the question file: the first test scene with a
    # "what shape ..." question
    texts, answers, ids = easy_vqa.get_test_questions()
    shapes = data.get_dataset("easyvqa_shapes", "test")
    j = next(k for k, t in enumerate(texts) if t.startswith("what shape"))
    kept = sorted({i for t, a, i in zip(texts, answers, ids) if a in {"circle", "rectangle", "triangle"}})
    pos = kept.index(ids[j])
    assert shapes.classes[shapes.targets[pos]] == answers[j]
    path = easy_vqa.get_test_image_paths()[ids[j]]
    np.testing.assert_array_equal(np.asarray(shapes[pos][0]), np.asarray(Image.open(path).convert("RGB")))


def test_easyvqa_sources_map_to_synsets():
    for name in ("easyvqa_shapes", "easyvqa_colors"):
        src = mll.offline_sample_source(name, "train")
        wn = mll.load_wordnet()
        assert all(w in wn for w in set(src.wnid_labels()))


# -- fakes -----------------------------------------------------------------------------------------
class OneHotEncoder:
    """text -> one-hot over a fixed vocabulary (unknown text: a constant vector)."""

    def __init__(self, vocab):
        self.vocab = list(vocab)

    def encode(self, texts):
        out = np.full((len(texts), len(self.vocab) + 1), 0.0)
        for i, t in enumerate(texts):
            if t in self.vocab:
                out[i, self.vocab.index(t)] = 1.0
            else:
                out[i, -1] = 1.0
        return out


class MeanColourBackbone:
    """A 'classifier' whose 1000 logits hold simple image statistics (mean RGB, contrast, mean
    horizontal / vertical gradient) in slots 0..5, zeros elsewhere."""

    def __init__(self):
        self.n_images = 0

    def preprocess(self, im):
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)

    def features_and_source_logits(self, x):
        self.n_images += x.shape[0]
        logits = torch.zeros(x.shape[0], 1000)
        logits[:, :3] = x.mean(dim=(2, 3))
        logits[:, 3] = x.std(dim=(1, 2, 3))
        logits[:, 4] = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
        logits[:, 5] = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        return x.mean(dim=(2, 3)), logits


# -- ridge maths -------------------------------------------------------------------------------------
def test_ridge_alignment_known_values():
    # one feature, two classes: x = -1 -> target e0, x = +1 -> target e1
    x = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    t = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    a = fit_ridge_alignment(x, t, ridge=1.0)
    np.testing.assert_allclose(a["mu"], [0.0]) and np.testing.assert_allclose(a["sd"], [1.0])
    np.testing.assert_allclose(a["t0"], [0.5, 0.5])
    # W = (1 + 1)^-1 * mean(xs * (t - t0)) = 0.5 * [-0.5, 0.5]
    np.testing.assert_allclose(a["W"], [[-0.25, 0.25]])
    # more ridge -> a smaller map, never a sign flip; inputs untouched
    x0 = x.copy()
    b = fit_ridge_alignment(x, t, ridge=10.0)
    assert np.all(np.abs(b["W"]) < np.abs(a["W"])) and np.all(np.sign(b["W"]) == np.sign(a["W"]))
    np.testing.assert_array_equal(x, x0)
    with pytest.raises(ValueError, match="ridge"):
        fit_ridge_alignment(x, t, ridge=0)
    with pytest.raises(ValueError, match="finite"):
        fit_ridge_alignment(np.array([[np.nan], [1.0]]), t[:2], ridge=1.0)
    with pytest.raises(ValueError, match=r"\(n, F\)"):
        fit_ridge_alignment(x, t[:3], ridge=1.0)


def test_spec_validation():
    with pytest.raises(ValueError, match="per_class"):
        FitPart("textures", per_class=0)
    with pytest.raises(ValueError, match="stage"):
        AlignedSpec("x", "efficientnet_lite0", (FitPart("textures"),), stage="pixels")
    with pytest.raises(ValueError, match="no fit data"):
        AlignedSpec("x", "efficientnet_lite0", ())


# -- a small real aligned model: fake backbone/encoder, real offline data --------------------------
def _textures_model(tmp_path, per_class=10, backbone=None):
    spec = AlignedSpec("aligned-test", "fake", (FitPart("textures", per_class=per_class),), ridge=1e-3)
    vocab = ["brick", "grass", "gravel"]
    return AlignedVLM(spec, backbone=backbone or MeanColourBackbone(), text_encoder=OneHotEncoder(vocab),
                      cache_dir=tmp_path, image_size=32)


def test_aligned_model_learns_its_classes_and_caches_the_fit_features(tmp_path, monkeypatch):
    monkeypatch.setattr(aligned, "class_text_targets",
                        lambda encode, dataset, names: mll.vlm.l2_normalise(np.asarray(encode(list(names)))))
    bb = MeanColourBackbone()
    vlm = _textures_model(tmp_path, backbone=bb)
    assert vlm.image_feature_key == "imagenet_logits-fake-32px"
    test = data.get_dataset("textures", "test")
    idx = data.subsample_per_class(test, 20, random_state=0)
    logits = vlm.zero_shot_logits([test[i][0] for i in idx], ["brick", "grass", "gravel"])
    acc = np.mean(np.argmax(logits, axis=1) == np.asarray(test.targets)[idx])
    assert acc > 0.8                                       # simple statistics separate the three photos
    assert bb.n_images == 3 * FIT_POOL_PER_CLASS + len(idx)   # the fit pool once, then the test images
    # a second model with the same backbone key reads the fit pool from the cache
    bb2 = MeanColourBackbone()
    other = _textures_model(tmp_path, per_class=5, backbone=bb2)
    other.alignment
    assert bb2.n_images == 0
    assert other.fit_indices()["textures"].size == 15
    prov = vlm.provenance()
    assert prov["fit_split"] == FIT_SPLIT == "train" and prov["n_images"] == 30


def test_fit_pool_is_seeded_prefix_and_train_only():
    a, b = fit_pool("lfw_faces", 0), fit_pool("lfw_faces", 0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fit_pool("lfw_faces", 1))
    train = data.get_dataset("lfw_faces", "train")
    y = np.asarray(train.targets)
    for c in range(a.shape[0]):
        assert np.all(y[a[c][a[c] >= 0]] == c)
    assert aligned._fit_dataset("lfw_faces").split == "train"


def test_no_aligner_is_fitted_on_target_test_images():
    """Every registered aligner's fit images are train images, disjoint (as pixels) from the test split."""
    for spec in ALIGNED_SPECS:
        vlm = AlignedVLM(spec)
        for dataset, (split, idx) in vlm.fitted_on().items():
            assert split == "train"
            train, test = data.get_dataset(dataset, "train"), data.get_dataset(dataset, "test")
            fit = {hashlib.sha1(np.asarray(train[int(i)][0]).tobytes()).hexdigest() for i in idx}
            test_hashes = {hashlib.sha1(np.asarray(test[j][0]).tobytes()).hexdigest()
                           for j in range(min(len(test), 2000))}
            if dataset != "digits":      # 8x8 digits with 17 grey levels: exact repeats exist in the raw data
                assert not fit & test_hashes, (spec.name, dataset)


def test_assert_not_fitted_on_rejects_overlap():
    vlm = AlignedVLM(AlignedSpec("a", "fake", (FitPart("lfw_faces", per_class=3),)))
    fitted = vlm.fitted_on()["lfw_faces"][1]
    test_task = offline_target("lfw_faces", per_class=5)
    assert_not_fitted_on([vlm], [test_task])               # test split: fine
    train_task = TargetTask("lfw_faces", ("face", "non-face"), "d", "t",
                                      data.get_dataset("lfw_faces", "train"), tuple(int(i) for i in fitted[:2]))
    with pytest.raises(ValueError, match="fitted on 2 images"):
        assert_not_fitted_on([vlm], [train_task])


# -- registry ----------------------------------------------------------------------------------------
def test_offline_hub_holds_conse_and_aligned_models():
    offline = list_vlms("offline")
    assert offline[:9] == [f"conse-{b}-{c.key}" for b in ("lite0", "lite1", "lite2") for c in CONSE_CONFIGS]
    assert offline[9:] == [s.name for s in ALIGNED_SPECS]
    # the EfficientNet aligners share the ConSE stand-ins' cached first stage
    a = mll.create_vlm("aligned-lite0-tops", image_size=128)
    c = mll.create_vlm("conse-lite0-names", image_size=128)
    assert isinstance(a, AlignedVLM) and isinstance(c, ConSEVLM) and a.image_feature_key == c.image_feature_key
    # no aligner covers every class of every offline dataset it is fitted on
    covered = {}
    for spec in ALIGNED_SPECS:
        for part in spec.fit:
            classes = data.get_classnames(part.dataset) if part.classes is None else part.classes
            covered.setdefault(part.dataset, set()).update(classes)
    assert set(covered) >= {"fashion_mnist", "mnist", "digits", "textures", "lfw_faces", "easyvqa_shapes",
                            "easyvqa_colors"}


# -- per-class oracle and heterogeneity ---------------------------------------------------------------
def test_per_class_oracle_models():
    r = np.array([[0.2, 0.9, 0.9], [0.5, 0.1, 0.0], [np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(per_class_oracle_models(r), [[1], [0], [0]])
    with pytest.raises(ValueError, match=r"\(C, M\)"):
        per_class_oracle_models(np.zeros(3))


class FakeBench:
    """Two models, one task with two classes: model a knows class 0, model b class 1."""

    def __init__(self):
        self.models = ["a", "b"]
        self.tasks = [type("T", (), {"name": "t"})()]
        self._recall = np.array([[1.0, 0.0], [0.5, 1.0]])           # (C, M)

    def per_class_accuracy(self, task):
        return self._recall

    def ground_truth(self):
        return pd.DataFrame({"t": self._recall.mean(axis=0)}, index=pd.Index(self.models, name="model"))

    def per_class_oracle_accuracy(self, task):
        return 0.95


def test_heterogeneity_table():
    table = heterogeneity_table(FakeBench())
    row = table.loc["t"]
    assert row["distinct best models"] == 2 and row["classes"] == 2
    assert row["mean spread"] == pytest.approx(0.75)
    assert row["best single model"] == "a" and row["best single acc"] == pytest.approx(0.75)
    assert row["per-class max recall"] == pytest.approx(1.0)
    assert row["oracle - best single"] == pytest.approx(0.2)
    assert table.loc["Avg.", "per-class oracle"] == pytest.approx(0.95)


# -- end to end: the oracle row of the benchmark on a tiny hub with one aligned model ---------------
_TINY = AlignedSpec("aligned-test-tiny", "efficientnet_lite0",
                    (FitPart("textures", ("brick", "grass"), per_class=5), FitPart("lfw_faces", per_class=5)))


@pytest.mark.slow
def test_benchmark_per_class_oracle_row(tmp_path):
    from mll.benchmark import build_offline_benchmark
    if _TINY.name not in list_vlms():                  # a group of its own: the offline hub stays as it is
        mll.register_vlm(_TINY.name, "test-offline-hub", lambda **kw: AlignedVLM(_TINY, **kw))
    bench = build_offline_benchmark(sources=["textures", "lfw_faces"], targets=["textures", "lfw_faces"],
                                    models=["conse-lite0-names", _TINY.name], images_per_node=3, per_class=4,
                                    image_size=64, cache_dir=tmp_path)
    table = bench.main_table((1,))
    gt = bench.ground_truth()
    for t in ("textures", "lfw_faces"):
        recall = bench.per_class_accuracy(t)                        # (C, M)
        best = np.argmax(recall, axis=1)
        pred, _ = mll.ensemble_predict(bench.probs[t], best[:, None], weights=bench.config.weights)
        assert table.loc["per-class oracle (k=1)", t] == pytest.approx(np.mean(pred == bench.y[t]))
    hetero = heterogeneity_table(bench)
    np.testing.assert_allclose(hetero.loc[["textures", "lfw_faces"], "per-class oracle"].to_numpy(float),
                               table.loc["per-class oracle (k=1)", ["textures", "lfw_faces"]].to_numpy(float))
    np.testing.assert_allclose(hetero.loc[["textures", "lfw_faces"], "best single acc"].to_numpy(float),
                               gt.max(axis=0).to_numpy(float))
    # the aligned model was fitted on train images only; the fit pool features are cached once
    assert list((tmp_path / "mll" / "image_features").glob("fit-textures-train-*/imagenet_logits-efficientnet_lite0-64px.npy"))
