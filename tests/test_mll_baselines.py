"""Tests of the VLM-selection baselines: INB, ModelGPT (LOVM) and the LOVM benchmark reproduction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mll.baselines import (LOVM_FEATURES, ModelGPT, features_to_frame, inb_rank, inb_select,
                           leave_one_dataset_out, load_lovm_tables, modelgpt_features, run_lovm_benchmark)
from mll.baselines.lovm import default_lovm_dir
from mll.baselines.ranking import (kendall_tau_all, lovm_l1, mean_absolute_error, selected_accuracy,
                                   top1_hit, topk_kendall_tau, topk_recall)


# ------------------------------------------------------------------------------------------------
# INB
# ------------------------------------------------------------------------------------------------
def test_inb_selects_the_best_imagenet_model():
    scores = {"ViT-B-32 openai": 0.63, "ViT-L-14 openai": 0.75, "RN50 openai": 0.59}
    assert inb_select(scores) == "ViT-L-14 openai"
    assert inb_rank(scores) == ["ViT-L-14 openai", "ViT-B-32 openai", "RN50 openai"]


def test_inb_tie_goes_to_the_name_that_sorts_first_whatever_the_insertion_order():
    a = {"zeta": 0.7, "alpha": 0.7, "mid": 0.1}
    b = {"alpha": 0.7, "mid": 0.1, "zeta": 0.7}
    assert inb_select(a) == inb_select(b) == "alpha"
    assert inb_rank(a) == inb_rank(b) == ["alpha", "zeta", "mid"]


@pytest.mark.parametrize("bad", [{}, {"m": float("nan")}, {"m": "high"}, {"": 0.3}, [("m", 0.3)]])
def test_inb_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        inb_select(bad)


def test_inb_does_not_mutate_the_callers_mapping():
    scores = {"b": 0.2, "a": 0.9}
    inb_rank(scores)
    assert list(scores.items()) == [("b", 0.2), ("a", 0.9)]


# ------------------------------------------------------------------------------------------------
# ModelGPT
# ------------------------------------------------------------------------------------------------
TRUE_W = np.array([0.3, -0.2, 0.1])
TRUE_B = 0.05


def _synthetic(n_models=12, n_datasets=5, seed=0, offsets=None):
    """Features ~ N(0, 1); target = TRUE_W·x + TRUE_B (+ a per-dataset offset if given)."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([[f"m{i:02d}" for i in range(n_models)],
                                      [f"d{j}" for j in range(n_datasets)]], names=["model", "dataset"])
    X = pd.DataFrame(rng.normal(size=(len(idx), 3)), index=idx, columns=["f1", "f2", "f3"])
    y = pd.Series(X.to_numpy() @ TRUE_W + TRUE_B, index=idx, name="acc")
    if offsets is not None:
        y = y + idx.get_level_values("dataset").map(offsets).to_numpy()
    return X, y


@pytest.mark.parametrize("regressor,standardize", [("linear", True), ("linear", False)])
def test_modelgpt_recovers_an_exact_linear_function(regressor, standardize):
    X, y = _synthetic()
    train = X.index.get_level_values("dataset") != "d4"
    model = ModelGPT(regressor, standardize=standardize).fit(X[train], y[train])
    pred = model.predict(X[~train])
    expected = X[~train].droplevel("dataset").to_numpy() @ TRUE_W + TRUE_B
    np.testing.assert_allclose(pred.to_numpy(), expected, atol=1e-10)
    assert list(pred.index) == [f"m{i:02d}" for i in range(12)]
    if not standardize:
        np.testing.assert_allclose(model.coef_.to_numpy(), TRUE_W, atol=1e-10)
        assert model.intercept_ == pytest.approx(TRUE_B, abs=1e-10)
    else:  # weights of z-scored features = w * std (population std of the training rows)
        np.testing.assert_allclose(model.coef_.to_numpy(), TRUE_W * X[train].std(ddof=0).to_numpy(), atol=1e-10)
    # select/rank follow the predicted scores
    assert model.select(X[~train]) == pred.idxmax()
    assert model.rank(X[~train])[-1] == pred.idxmin()


def test_modelgpt_centered_target_removes_the_dataset_offset():
    # accuracy = w·x + b + offset_d with x centred within each dataset: the centred target is exactly
    # w·x, so the centred fit predicts w·x exactly; the accuracy fit cannot know the held-out offset
    # and is off by (mean training offset - offset of d4), the same for every model
    offsets = {"d0": 0.0, "d1": 0.3, "d2": -0.2, "d3": 0.1, "d4": 0.25}
    X, _ = _synthetic(n_models=40)
    X = X - X.groupby(level="dataset").transform("mean")
    y = pd.Series(X.to_numpy() @ TRUE_W + TRUE_B, index=X.index)
    y = y + X.index.get_level_values("dataset").map(offsets).to_numpy()
    train = X.index.get_level_values("dataset") != "d4"
    test = X[~train]
    lin = test.droplevel("dataset").to_numpy() @ TRUE_W
    centred = ModelGPT(target="centered").fit(X[train], y[train]).predict(test).to_numpy()
    np.testing.assert_allclose(centred, lin, atol=1e-10)
    raw = ModelGPT(target="accuracy").fit(X[train], y[train]).predict(test).to_numpy()
    truth = lin + TRUE_B + offsets["d4"]
    np.testing.assert_allclose(raw - truth, np.full_like(lin, 0.05 - 0.25), atol=1e-10)


def test_leave_one_dataset_out_never_sees_the_held_out_ground_truth():
    X, y = _synthetic(seed=1)
    y = y + np.random.default_rng(2).normal(scale=0.05, size=len(y))  # not exactly linear
    y_before = y.copy()
    base = leave_one_dataset_out(ModelGPT(), X, y)
    assert base.shape == (12, 5)
    pd.testing.assert_series_equal(y, y_before)  # the caller's targets are not modified
    rng = np.random.default_rng(3)
    for d in ["d0", "d3"]:
        is_d = y.index.get_level_values("dataset") == d
        y_changed = y.copy()
        y_changed[is_d] = rng.uniform(size=is_d.sum())
        again = leave_one_dataset_out(ModelGPT(), X, y_changed)
        pd.testing.assert_series_equal(again[d], base[d])  # the held-out dataset's predictions do not move
        other = [c for c in base.columns if c != d]
        assert not np.allclose(again[other].to_numpy(), base[other].to_numpy())  # ...the others' do


def test_exclude_model_also_hides_the_models_own_ground_truth():
    X, y = _synthetic(seed=4)
    y = y + np.random.default_rng(5).normal(scale=0.05, size=len(y))
    base = leave_one_dataset_out(ModelGPT(), X, y, datasets=["d2"], exclude_model=True)
    changed = y.copy()
    is_m = y.index.get_level_values("model") == "m03"
    changed[is_m] = 0.99  # model m03's accuracy on every dataset
    strict = leave_one_dataset_out(ModelGPT(), X, changed, datasets=["d2"], exclude_model=True)
    assert strict.loc["m03", "d2"] == pytest.approx(base.loc["m03", "d2"], abs=1e-12)
    assert not np.isclose(strict.loc["m00", "d2"], base.loc["m00", "d2"])  # other models' fits saw it
    loose = leave_one_dataset_out(ModelGPT(), X, changed, datasets=["d2"])
    assert not np.isclose(loose.loc["m03", "d2"], base.loc["m03", "d2"])


def test_modelgpt_validates_its_inputs():
    X, y = _synthetic()
    with pytest.raises(ValueError, match="MultiIndex"):
        ModelGPT().fit(X.reset_index(drop=True), y.reset_index(drop=True))
    with pytest.raises(ValueError, match="lack"):
        ModelGPT().fit(X, y.iloc[1:])
    X_nan = X.copy()
    X_nan.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ModelGPT().fit(X_nan, y)
    with pytest.raises(ValueError, match="columns"):
        ModelGPT(features=["f1", "nope"]).fit(X, y)
    with pytest.raises(ValueError):
        ModelGPT("svm")
    with pytest.raises(ValueError):
        ModelGPT(target="rank")
    with pytest.raises(RuntimeError, match="not fitted"):
        ModelGPT().predict(X)
    model = ModelGPT().fit(X, y)
    with pytest.raises(ValueError, match="one dataset"):
        model.predict(X)
    with pytest.raises(ValueError, match="columns"):
        model.predict(X.xs("d0", level="dataset")[["f1", "f2"]])
    # a frame indexed by plain model names is accepted for one dataset
    single = X.xs("d0", level="dataset")
    pd.testing.assert_series_equal(model.predict(single), model.predict(X[X.index.get_level_values(1) == "d0"]))


# ------------------------------------------------------------------------------------------------
# ranking measures (hand-computed)
# ------------------------------------------------------------------------------------------------
def test_ranking_measures_on_a_hand_checked_case():
    models = list("abcdef")
    pred = pd.Series([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], index=models)
    true = pd.Series([0.50, 0.80, 0.60, 0.70, 0.10, 0.20], index=models)
    # predicted order a b c d e f; true order b d c a f e
    assert selected_accuracy(pred, true) == 0.50
    assert top1_hit(pred, true) == 0.0
    tied = true.copy()
    tied["a"] = 0.80  # the selected model ties with the best one: a hit
    assert top1_hit(pred, tied) == 1.0
    # top-3: pred {a,b,c}, true {b,d,c}: shared {b,c} -> R@3 = 2/3; < 3 shared -> tau@3 = 0
    assert topk_recall(pred, true, k=3) == pytest.approx(2 / 3)
    assert topk_kendall_tau(pred, true, k=3) == 0.0
    # top-4: pred {a,b,c,d}, true {b,d,c,a}: shared all 4; pred order a>b>c>d, true b>d>c>a:
    # pairs (a,b)- (a,c)- (a,d)- (b,c)+ (b,d)+ (c,d)-  -> (2-4)/6 = -1/3
    assert topk_kendall_tau(pred, true, k=4) == pytest.approx(-1 / 3)
    # full tau over 6 models: the 4 discordant pairs above + (e,f); the other 10 concordant -> 5/15
    assert kendall_tau_all(pred, true) == pytest.approx(1 / 3)
    # L1@2 = |mean(0.9-0.5, 0.8-0.8)| = 0.2; MAE = mean(.4, 0, .1, .1, .4, .2) = 0.2
    assert lovm_l1(pred, true, k=2) == pytest.approx(0.2)
    assert mean_absolute_error(pred, true) == pytest.approx(1.2 / 6)
    with pytest.raises(ValueError, match="different models"):
        topk_recall(pred, true.drop("f"))


# ------------------------------------------------------------------------------------------------
# text-derived features on a tiny fake VLM
# ------------------------------------------------------------------------------------------------
class FakeVLM:
    """encode_texts from a lookup table of unit vectors (E = 3)."""

    TABLE = {
        "a photo of a cat.": [1.0, 0.0, 0.0],
        "a photo of a dog.": [0.6, 0.8, 0.0],
        "c1": [1.0, 0.0, 0.0], "c2": [0.0, 1.0, 0.0],
        "d1": [0.0, 0.6, 0.8], "d2": [0.8, 0.6, 0.0],
        "kitty": [1.0, 0.0, 0.0], "puppy": [0.6, 0.8, 0.0], "hound": [0.0, 1.0, 0.0],
    }

    def __init__(self, scale=1.0):
        self.scale = scale
        self.calls = 0

    def encode_texts(self, texts):
        self.calls += 1
        return self.scale * np.array([self.TABLE[t] for t in texts])


CAPTIONS = {"cat": ["c1", "c2"], "dog": ["d1", "d2"]}


def test_modelgpt_features_hand_checked_values():
    feats = modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, 0.71, noise_sigma=0.0,
                              synonyms={"cat": ["kitty"], "dog": ["puppy", "hound"]})
    assert list(feats) == list(LOVM_FEATURES)
    # W = [[1,0,0],[.6,.8,0]], W W^T off-diagonal = 0.6 for both classes
    assert feats["intraclass_sim"] == pytest.approx(0.6)
    # caption-prompt cosines: c1 (1, .6), c2 (0, .8), d1 (0, .48), d2 (.8, .96)
    # per-class means: cat (.5, .7), dog (.4, .72)
    assert feats["inter_close"] == pytest.approx((0.5 + 0.72) / 2)
    assert feats["intra_close"] == pytest.approx((0.7 + 0.4) / 2)
    # argmax: c1 cat, c2 dog (wrong), d1 dog, d2 dog -> acc 3/4; F1 cat 2/3, dog 0.8
    assert feats["text-acc1"] == pytest.approx(0.75)
    assert feats["text-f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # synonyms: cat 1.0; dog mean(1.0, 0.8) = 0.9
    assert feats["superclass_metric"] == pytest.approx(0.95)
    assert feats["IN-score"] == 0.71


def test_modelgpt_features_noise_is_seeded_and_optional_feature_absent_without_synonyms():
    a = modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, 0.5, noise_sigma=0.5, random_state=7)
    b = modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, 0.5, noise_sigma=0.5, random_state=7)
    assert a == b
    assert "superclass_metric" not in a
    # geometric features do not depend on the noise
    c = modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, 0.5, noise_sigma=0.0)
    for key in ("intraclass_sim", "inter_close", "intra_close", "IN-score"):
        assert a[key] == c[key]


def test_modelgpt_features_validates_inputs():
    with pytest.raises(ValueError, match="L2-normalised"):
        modelgpt_features(FakeVLM(scale=2.0), ["cat", "dog"], CAPTIONS, 0.5)
    with pytest.raises(ValueError, match="lack the classes"):
        modelgpt_features(FakeVLM(), ["cat", "dog"], {"cat": ["c1"]}, 0.5)
    with pytest.raises(ValueError, match="placeholder"):
        modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, 0.5, templates=["a photo"])
    with pytest.raises(ValueError, match="accuracy"):
        modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, 71.0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        modelgpt_features(FakeVLM(), ["cat"], CAPTIONS, 0.5)


def test_features_to_frame_feeds_modelgpt():
    rows = {}
    for m, acc in [("vlm_a", 0.6), ("vlm_b", 0.7), ("vlm_c", 0.8)]:
        for d in ["ds1", "ds2"]:
            rows[(m, d)] = modelgpt_features(FakeVLM(), ["cat", "dog"], CAPTIONS, acc, noise_sigma=0.0)
    frame = features_to_frame(rows)
    assert list(frame.index.names) == ["model", "dataset"]
    assert list(frame.columns) == [f for f in LOVM_FEATURES if f != "superclass_metric"]
    targets = pd.Series(frame["IN-score"].to_numpy() * 0.5, index=frame.index)
    model = ModelGPT(features=["IN-score"]).fit(frame.xs("ds1", level="dataset", drop_level=False),
                                               targets.xs("ds1", level="dataset", drop_level=False))
    pred = model.predict(frame.xs("ds2", level="dataset", drop_level=False))
    np.testing.assert_allclose(pred.to_numpy(), [0.3, 0.35, 0.4], atol=1e-12)
    assert model.select(frame.xs("ds2", level="dataset", drop_level=False)) == "vlm_c"


# ------------------------------------------------------------------------------------------------
# the LOVM reproduction on the real tables
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lovm_result():
    tables = load_lovm_tables()
    return tables, run_lovm_benchmark(tables, ("INB", "ModelGPT", "Oracle"))


def test_lovm_tables_are_complete():
    tables = load_lovm_tables()
    assert tables.accuracy.shape == (35, 23)
    assert tables.features.shape == (35 * 23, len(LOVM_FEATURES))
    assert "imagenet1k" in tables.datasets


def test_lovm_reproduction_measures_are_in_range(lovm_result):
    tables, result = lovm_result
    per = result.per_dataset
    assert set(per.index.get_level_values("method")) == {"INB", "ModelGPT", "Oracle"}
    assert len(per.loc["ModelGPT"]) == 23
    assert per["selected_acc"].between(0, 1).all() and per["top1_hit"].isin([0.0, 1.0]).all()
    assert per["R@5"].isin([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]).all()
    assert per["tau@5"].between(-1, 1).all() and per["tau_all"].between(-1, 1).all()
    assert (per["L1@5"] >= 0).all() and (per["MAE"] >= 0).all()
    oracle = result.summary.loc["Oracle"]
    assert oracle["R@5"] == 1.0 and oracle["tau@5"] == pytest.approx(1.0) and oracle["MAE"] == 0.0
    # the learned selector is not worse than choosing at random in rank correlation
    assert result.summary.loc["ModelGPT", "tau_all"] > 0.2


def test_lovm_inb_top1_matches_the_raw_ground_truth_table(lovm_result):
    _, result = lovm_result
    raw = pd.read_csv(default_lovm_dir() / "eval_table.csv")  # independent of load_lovm_tables
    imagenet = raw[raw.dataset == "imagenet1k"].set_index("model_fullname")["acc1"]
    best_imagenet_model = imagenet.idxmax()
    for dataset, rows in raw.groupby("dataset"):
        acc = rows.set_index("model_fullname")["acc1"]
        assert result.per_dataset.loc[("INB", dataset), "selected_acc"] == pytest.approx(acc[best_imagenet_model])
        assert result.per_dataset.loc[("Oracle", dataset), "selected_acc"] == pytest.approx(acc.max())
    # on ImageNet itself INB is the ground truth
    assert result.per_dataset.loc[("INB", "imagenet1k"), "R@5"] == 1.0
    assert result.per_dataset.loc[("INB", "imagenet1k"), "L1@5"] == pytest.approx(0.0)


def test_lovm_modelgpt_held_out_predictions_ignore_that_datasets_ground_truth():
    tables = load_lovm_tables()
    held_out = "eurosat"
    base = leave_one_dataset_out(ModelGPT(target="centered"), tables.features, tables.targets, datasets=[held_out])
    scrambled = tables.targets.copy()
    is_d = scrambled.index.get_level_values("dataset") == held_out
    scrambled[is_d] = scrambled[is_d].to_numpy()[::-1]
    again = leave_one_dataset_out(ModelGPT(target="centered"), tables.features, scrambled, datasets=[held_out])
    pd.testing.assert_frame_equal(base, again)


@pytest.mark.slow
def test_modelgpt_features_with_the_packaged_text_encoder():
    """Real text embeddings (all-MiniLM-L6-v2, offline): captions that describe their class are
    classified correctly and sit closer to their own class prompt than to any other."""
    from Label_embedding.encoders import get_text_encoder

    encoder = get_text_encoder("minilm")

    class TextOnlyVLM:
        def encode_texts(self, texts):
            return encoder.encode(texts)

    captions = {
        "cat": ["a cat sleeping on a sofa", "a kitten playing with yarn", "a tabby cat on a windowsill"],
        "airplane": ["a jet taking off from the runway", "an airliner flying above the clouds"],
        "pizza": ["a pepperoni pizza on a wooden table", "a slice of cheese pizza"],
    }
    feats = modelgpt_features(TextOnlyVLM(), list(captions), captions, 0.6, noise_sigma=0.0)
    assert feats["text-acc1"] == 1.0 and feats["text-f1"] == 1.0
    assert feats["inter_close"] > feats["intra_close"]
    assert -1.0 <= feats["intraclass_sim"] < 1.0


# ------------------------------------------------------------------------------------------------
# ModelGPT in the MLL benchmark: fitted on the sample datasets (mll.baselines.sample_fit)
# ------------------------------------------------------------------------------------------------
import hashlib  # noqa: E402

from mll.baselines import sample_fit  # noqa: E402

DOG, TABBY, SANDAL, BRICK, GRAVEL = "n02084071", "n02123045", "n04133789", "n02897820", "n14698884"


def _text_vector(text, dim=32, salt=""):
    seed = int(hashlib.sha1((salt + text).encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(dim)


class _Image:
    def __init__(self, wnid, k):
        self.wnid, self.k = wnid, k


def _sources():
    from mll.graph import SampleSource

    class Source(SampleSource):
        def __init__(self, name, counts):
            self.name = name
            self.items = [(w, k) for w, n in counts.items() for k in range(n)]

        def wnid_labels(self):
            return [w for w, _ in self.items]

        def load(self, index):
            return _Image(*self.items[index])

    return [Source("imagenet", {DOG: 3, TABBY: 3, SANDAL: 3}), Source("imagenet_sketch", {BRICK: 3, GRAVEL: 3, DOG: 3})]


def _fake_vlm(name, noise, text_noise, wn):
    from mll.vlm import VLM, l2_normalise

    class Fake(VLM):
        """Image embedding = its synset's prompt embedding + ``noise``; texts shifted per model."""

        def image_features(self, images):
            return np.array([self._vec(self.prompts_for(wn[im.wnid].name)[0])
                             + noise * np.random.default_rng([im.k, int(im.wnid[1:]), len(name)]).standard_normal(32)
                             for im in images])

        def embed_image_features(self, features):
            return l2_normalise(features)

        def _vec(self, t):
            return _text_vector(t) + text_noise * _text_vector(t, salt=name)

        def _encode_texts(self, texts):
            return np.stack([self._vec(t) for t in texts])

    vlm = Fake()
    vlm.name, vlm.templates = name, ("a photo of a {}.",)
    return vlm


@pytest.fixture(scope="module")
def mgpt_case():
    from mll.graph import SemanticGraph
    from mll.tasks import TargetTask
    from mll.wordnet import load_wordnet
    wn = load_wordnet()
    graph = SemanticGraph("mgpt-test", wordnet=wn, images_per_node=3, random_state=0)
    graph.add_sources(_sources())
    vlms = {f"m{i}": _fake_vlm(f"m{i}", noise, tn, wn)
            for i, (noise, tn) in enumerate([(0.0, 0.1), (0.6, 0.3), (1.2, 0.2), (2.0, 0.5), (0.3, 0.8), (3.0, 0.05)])}
    scores = {m: 0.3 + 0.1 * i for i, m in enumerate(vlms)}
    tasks = [TargetTask("pets", ("dog", "tabby", "hamster"), "pet photo", "image classification", None, ()),
             TargetTask("ground", ("brick", "gravel", "0 - zero", "qwzx"), "photo", "texture classification", None, ())]
    captions = {"pets": [["a dog", "a dog outside"], ["a tabby cat"], ["a small hamster"]],
                "ground": [["a red brick"], ["grey gravel"], ["the digit zero"], ["an unknown thing"]]}
    return graph, vlms, scores, tasks, captions


def test_sample_datasets_and_their_ground_truth(mgpt_case):
    graph, vlms, *_ = mgpt_case
    datasets = sample_fit.graph_sample_datasets(graph)
    assert [d.name for d in datasets] == ["imagenet", "imagenet_sketch"]
    assert datasets[0].wnids == tuple(sorted((DOG, TABBY, SANDAL))) and datasets[0].domain == "photograph/picture"
    assert datasets[1].domain == "sketch/drawing"            # imagenet_sketch = "imagenet-sketch" of the JSON
    in_graph = {r for w in graph.nodes for r in graph.images_of(w) if r.source == "imagenet"}
    assert set(datasets[0].refs) == in_graph and 6 <= len(in_graph) <= 9      # dog: 3 of the 6 pooled images
    wnid_of = graph.sources["imagenet"].wnid_labels()
    assert [datasets[0].wnids[y] for y in datasets[0].labels] == [wnid_of[r.index] for r in datasets[0].refs]
    gt = sample_fit.sample_ground_truth(vlms, graph, datasets)
    assert gt.shape == (6, 2) and gt.loc["m0"].tolist() == [1.0, 1.0]       # noise-free model: perfect
    assert (gt.to_numpy() >= 0).all() and (gt.to_numpy() <= 1).all()


def test_wordnet_synonyms():
    from mll.wordnet import load_wordnet
    wn = load_wordnet()
    assert sample_fit.wordnet_synonyms("dog", wn, DOG) == ["domestic dog", "Canis familiaris", "canine", "domestic animal"]
    assert "zero" in sample_fit.wordnet_synonyms("0 - zero", wn)          # looked up by its parts
    assert sample_fit.wordnet_synonyms("qwzx", wn) == ["qwzx"]
    assert sample_fit._distinct_names(["n02012849", "n03126707"], wn) == ("crane (wading bird)", "crane (lifting device)")


def test_modelgpt_sample_fit_never_sees_target_ground_truth_and_equals_hand_ols(mgpt_case, monkeypatch):
    graph, vlms, scores, tasks, captions = mgpt_case
    seen = []
    original = ModelGPT.fit

    def spy(self, features, targets):
        seen.append((set(features.index.get_level_values("dataset")), set(targets.index.get_level_values("dataset")),
                     list(features.columns), features.copy(), targets.copy()))
        return original(self, features, targets)

    monkeypatch.setattr(ModelGPT, "fit", spy)
    pred = sample_fit.modelgpt_target_predictions(vlms, graph, tasks, captions, scores, fit="sample")
    assert list(pred.columns) == ["pets", "ground"] and sorted(pred.index) == sorted(vlms)
    assert len(seen) == 1
    fdatasets, tdatasets, columns, X, y = seen[0]
    assert fdatasets == tdatasets == {"imagenet", "imagenet_sketch"}     # sample rows only
    assert "superclass_metric" in columns and "IN-score" in columns       # the synonym feature is used
    gt = sample_fit.sample_ground_truth(vlms, graph, sample_fit.graph_sample_datasets(graph))
    np.testing.assert_allclose(y.to_numpy(), [gt.loc[m, d] for m, d in y.index])

    # hand-fitted OLS on the 12 sample rows, applied to the target rows' features
    A = np.column_stack([X.to_numpy(), np.ones(len(X))])
    assert np.linalg.matrix_rank(A) == A.shape[1]
    coef = np.linalg.lstsq(A, y.to_numpy(), rcond=None)[0]
    inputs = {t.name: (list(t.classnames), dict(zip(t.classnames, captions[t.name])),
                       {c: sample_fit.wordnet_synonyms(c, graph.wordnet) for c in t.classnames}) for t in tasks}
    tf = sample_fit.modelgpt_feature_rows(vlms, inputs, scores)[columns]
    hand = pd.Series(np.column_stack([tf.to_numpy(), np.ones(len(tf))]) @ coef, index=tf.index)
    for (m, d), v in hand.items():
        assert pred.loc[m, d] == pytest.approx(v, abs=1e-8)

    with pytest.raises(ValueError, match="never uses the targets' ground truth"):
        sample_fit.modelgpt_target_predictions(vlms, graph, tasks, captions, scores, fit="sample",
                                               target_ground_truth=lambda: None)


def test_modelgpt_loto_fit_stays_available(mgpt_case, monkeypatch):
    graph, vlms, scores, tasks, captions = mgpt_case
    truth = pd.DataFrame({"pets": np.linspace(0.2, 0.7, 6), "ground": np.linspace(0.5, 0.1, 6)}, index=list(vlms))
    seen = []
    original = ModelGPT.fit
    monkeypatch.setattr(ModelGPT, "fit", lambda self, f, t: (seen.append(set(f.index.get_level_values("dataset"))),
                                                             original(self, f, t))[1])
    pred = sample_fit.modelgpt_target_predictions(vlms, graph, tasks, captions, scores, fit="loto",
                                                  target_ground_truth=lambda: truth)
    assert sorted(map(sorted, seen)) == [["ground"], ["pets"]]           # each target left out once
    assert list(pred.columns) == ["pets", "ground"]
    with pytest.raises(ValueError, match="unknown ModelGPT fit"):
        sample_fit.modelgpt_target_predictions(vlms, graph, tasks, captions, scores, fit="targets")
