"""MLL selection (Eq. 5-7) and reuse (Eq. 8-10), released and reconstruction variants, checked by hand."""
import json
import math

import numpy as np
import pytest

from mll.reuse import (ensemble_confidence, ensemble_predict, entropy, entropy_weights, inverse_entropy_weights,
                       top_k_models)
from mll.selection import (class_scores, embed_captions, generate_class_descriptions, load_class_captions,
                           reuse_metric, select_models, selected_nodes, transfer_matrix)
from mll.wordnet import load_wordnet

# two classes, three graph nodes in 2-D: cos(class0, nodes) = (1, .6, 0), cos(class1, nodes) = (0, .8, 1)
CLASSES = np.array([[1.0, 0.0], [0.0, 1.0]])
NODES = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
LABELS = np.array([[0.9, 0.5, 0.1],    # model A: a_A(v) per node (reconstruction's accuracy label)
                   [0.2, 0.6, 0.8]])   # model B
SIZES = np.array([10.0, 5.0, 4.0])     # |X_v|
# candidate-protocol counts [TP = a |X_v|, FP = 0, P = |X_v|]
LABEL_COUNTS = np.stack([np.stack([lab * SIZES, np.zeros(3), SIZES]) for lab in LABELS])
# definition-protocol counts [TP, FP, P] per model and node
COUNTS = np.array([[[8, 3, 1], [2, 1, 0], [10, 5, 4]],      # model A
                   [[4, 4, 3], [0, 5, 1], [10, 5, 4]]], dtype=float)   # model B


def test_released_transfer_is_100_cos_on_top_k():
    s = transfer_matrix(CLASSES, NODES, k_nodes=2)                   # released default
    np.testing.assert_allclose(s, [[100, 60, 0], [0, 80, 100]])
    np.testing.assert_array_equal(selected_nodes(s), [0, 1, 2])
    neg = transfer_matrix(np.array([[-0.6, 0.8]]), np.array([[1.0, 0.0], [0.0, 1.0]]), k_nodes=2)
    np.testing.assert_allclose(neg, [[-60.0, 80.0]])                  # a negative cosine is kept (no clipping)


def test_reconstruction_transfer_top2_by_hand():
    t = transfer_matrix(CLASSES, NODES, k_nodes=2, kind="reconstruction")
    # class 0 keeps nodes 0 (1.0) and 1 (0.6): 1/1.6, 0.6/1.6; class 1 keeps nodes 2 (1.0) and 1 (0.8)
    np.testing.assert_allclose(t, [[1 / 1.6, 0.6 / 1.6, 0.0], [0.0, 0.8 / 1.8, 1 / 1.8]])
    t1 = transfer_matrix(CLASSES, NODES, k_nodes=1, kind="reconstruction")
    np.testing.assert_allclose(t1, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(selected_nodes(t1), [0, 2])


def test_released_f1_precision_recall_by_hand():
    s = transfer_matrix(CLASSES, NODES, k_nodes=2)
    # class 0, A: TP = 100*8 + 60*3 = 980, FP = 100*2 + 60*1 = 260, P = 100*10 + 60*5 = 1300
    f1 = class_scores(s, COUNTS, "f1")
    np.testing.assert_allclose(f1, [[1960 / 3520, 1280 / 2880], [680 / 1560, 1240 / 2540]])
    np.testing.assert_allclose(class_scores(s, COUNTS, "precision")[0], [980 / 1240, 640 / 940])
    np.testing.assert_allclose(class_scores(s, COUNTS, "recall")[0], [980 / 1300, 640 / 1300])
    # not the standard F1 = 2PR / (P + R)
    p, r = 980 / 1240, 980 / 1300
    assert abs(f1[0, 0] - 2 * p * r / (p + r)) > 0.1
    # A is better on class 0, B on class 1
    np.testing.assert_array_equal(top_k_models(f1, 1), [[0], [1]])
    with pytest.raises(ValueError, match="counts"):
        class_scores(s, COUNTS[:, :, :2], "f1")
    np.testing.assert_array_equal(class_scores(s, np.zeros((2, 3, 3)), "precision"), 0.0)   # 0/0 -> 0


def test_eq7_mean_over_the_other_classes():
    f = np.array([[0.2], [0.5], [0.8]])                               # 3 classes, one model
    np.testing.assert_allclose(reuse_metric(f, 0.7)[:, 0],            # released: mean over c' != c
                               [0.7 * 0.2 + 0.3 * 0.65, 0.7 * 0.5 + 0.3 * 0.5, 0.7 * 0.8 + 0.3 * 0.35])
    np.testing.assert_allclose(reuse_metric(f, 0.7, "all")[:, 0], 0.7 * f[:, 0] + 0.3 * 0.5)
    with pytest.raises(ValueError, match="two classes"):
        reuse_metric(f[:1], 0.7)
    with pytest.raises(ValueError, match="form"):
        reuse_metric(f, 0.7, "some")


def test_reconstruction_eq6_eq7_by_hand():
    t = transfer_matrix(CLASSES, NODES, k_nodes=2, kind="reconstruction")
    p = class_scores(t, LABEL_COUNTS, "accuracy")                    # Eq. 6, (C, M)
    pa0 = 0.625 * 0.9 + 0.375 * 0.5                                  # 0.75
    pb0 = 0.625 * 0.2 + 0.375 * 0.6                                  # 0.35
    pa1 = (0.8 * 0.5 + 1.0 * 0.1) / 1.8                              # 0.2778
    pb1 = (0.8 * 0.6 + 1.0 * 0.8) / 1.8                              # 0.7111
    np.testing.assert_allclose(p, [[pa0, pb0], [pa1, pb1]])
    r = reuse_metric(p, alpha=0.7, form="all")                       # Eq. 7
    mean_a, mean_b = (pa0 + pa1) / 2, (pb0 + pb1) / 2
    np.testing.assert_allclose(r, [[0.7 * pa0 + 0.3 * mean_a, 0.7 * pb0 + 0.3 * mean_b],
                                   [0.7 * pa1 + 0.3 * mean_a, 0.7 * pb1 + 0.3 * mean_b]])
    np.testing.assert_allclose(r[0, 0], 0.6791667, atol=1e-6)
    np.testing.assert_array_equal(top_k_models(r, 1), [[0], [1]])    # A for class 0, B for class 1
    # alpha = 0: only the overall performance counts -> B (0.5306 > 0.5139) everywhere
    np.testing.assert_array_equal(top_k_models(reuse_metric(p, 0.0, "all"), 1), [[1], [1]])


def test_select_models_both_variants_and_no_mutation():
    c, n, counts = CLASSES.copy(), NODES.copy(), COUNTS.copy()
    res = select_models(counts, ["A", "B"], c, n, ["c0", "c1"], k_nodes=2, alpha=0.7)
    np.testing.assert_array_equal(c, CLASSES)
    np.testing.assert_array_equal(n, NODES)
    np.testing.assert_array_equal(counts, COUNTS)
    np.testing.assert_allclose(res.predicted, class_scores(transfer_matrix(c, n, 2), COUNTS, "f1"))
    np.testing.assert_allclose(res.scores, reuse_metric(res.predicted, 0.7, "others"))
    sub = res.restrict(["B"], 0.7)
    np.testing.assert_allclose(sub.predicted[:, 0], res.predicted[:, 1])
    # a callable receives the selected node indices V_S
    seen = []

    def counts_of(vs):
        seen.append(list(vs))
        return COUNTS[:, :, vs]

    res1 = select_models(counts_of, ["A", "B"], c, n, ["c0", "c1"], k_nodes=1)
    assert seen == [[0, 2]]
    np.testing.assert_allclose(res1.predicted, class_scores(transfer_matrix(c, n, 1)[:, [0, 2]], COUNTS[:, :, [0, 2]]))
    rec = select_models(LABEL_COUNTS, ["A", "B"], c, n, ["c0", "c1"], k_nodes=2, transfer="reconstruction",
                        score="accuracy", eq7="all")
    np.testing.assert_allclose(rec.scores[0, 0], 0.6791667, atol=1e-6)
    with pytest.raises(ValueError, match="node counts"):
        select_models(COUNTS[:1], ["A", "B"], c, n, ["c0", "c1"], k_nodes=2)


def test_selection_input_validation():
    with pytest.raises(ValueError, match="k_nodes"):
        transfer_matrix(CLASSES, NODES, k_nodes=4)
    with pytest.raises(ValueError, match="no graph node with positive"):
        transfer_matrix(np.array([[-1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), k_nodes=1, kind="reconstruction")
    with pytest.raises(ValueError, match="alpha"):
        reuse_metric(np.ones((2, 2)), 1.5)
    with pytest.raises(KeyError, match="transfer"):
        transfer_matrix(CLASSES, NODES, 1, kind="nope")


def test_inverse_entropy_weights_by_hand():
    probs = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])                 # (M=2, N=1, C=2): A confident, B uniform
    h_a = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))            # 0.4690 bits
    np.testing.assert_allclose(entropy(probs, axis=2, base=2)[:, 0], [h_a, 1.0])
    w = inverse_entropy_weights(probs, [0, 1])
    np.testing.assert_allclose(w[0], [1 / h_a, 1.0])                 # not normalised; confident A weighs more
    both = np.array([[0, 1], [0, 1]])
    conf = ensemble_confidence(probs, both)                           # released default
    np.testing.assert_allclose(conf[0], [0.9 / h_a + 0.5, 0.1 / h_a + 0.5])
    np.testing.assert_allclose(conf[0], [2.418989, 0.713221], atol=1e-5)
    # k = 1: class c scores p(c|x) / H(x), which can overturn the per-class probabilities
    probs2 = np.array([[[0.6, 0.4]], [[0.45, 0.55]]])
    per_class = np.array([[1], [0]])                                  # class 0 -> B, class 1 -> A
    pred, conf2 = ensemble_predict(probs2, per_class)
    h = entropy(probs2, axis=2, base=2)[:, 0]
    np.testing.assert_allclose(conf2[0], [0.45 / h[1], 0.4 / h[0]])
    # a one-hot prediction (H = 0) gets the finite weight 1 / eps
    onehot = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    np.testing.assert_allclose(inverse_entropy_weights(onehot, [0, 1], eps=1e-6)[0], [1e6, 1.0])
    assert np.all(np.isfinite(ensemble_confidence(onehot, both)))


def test_entropy_weighted_ensemble_by_hand():
    # one image, two classes; model A is confident, model B uniform
    probs = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])                 # (M=2, N=1, C=2)
    h_a = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))              # 0.3251
    h_b = math.log(2.0)                                               # 0.6931
    np.testing.assert_allclose(entropy(probs, axis=2)[:, 0], [h_a, h_b])
    eps = 1e-6
    w_a = (h_a + eps) / (h_a + h_b + 2 * eps)                         # Eq. 9: lower weight for the confident A
    w_b = 1 - w_a
    np.testing.assert_allclose(entropy_weights(probs, [0, 1], eps)[0], [w_a, w_b])
    assert w_a < w_b
    both = np.array([[0, 1], [0, 1]])                                 # E_c = {A, B} for both classes
    conf = ensemble_confidence(probs, both, eps, weights="entropy")   # Eq. 8
    np.testing.assert_allclose(conf[0], [w_a * 0.9 + w_b * 0.5, w_a * 0.1 + w_b * 0.5])
    np.testing.assert_allclose(conf[0], [0.627705, 0.372295], atol=1e-5)


def test_k1_ensemble_uses_each_class_model():
    probs = np.array([[[0.9, 0.1], [0.3, 0.7]],                      # model A on two images
                      [[0.5, 0.5], [0.6, 0.4]]])                     # model B
    per_class = np.array([[0], [1]])                                  # class 0 -> A, class 1 -> B
    pred, conf = ensemble_predict(probs, per_class, weights="entropy")
    np.testing.assert_allclose(conf, [[0.9, 0.5], [0.3, 0.4]])        # conf_c = p_{m_c}(c|x)
    np.testing.assert_array_equal(pred, [0, 1])                       # Eq. 10


def test_reuse_validation():
    with pytest.raises(KeyError, match="reuse weights"):
        ensemble_confidence(np.full((1, 1, 2), 0.5), np.array([[0], [0]]), weights="nope")
    with pytest.raises(ValueError, match="sum to 1"):
        ensemble_confidence(np.ones((1, 1, 2)), np.array([[0], [0]]))
    with pytest.raises(ValueError, match="outside"):
        ensemble_confidence(np.full((1, 1, 2), 0.5), np.array([[0], [1]]))
    with pytest.raises(ValueError, match="k must be"):
        top_k_models(np.ones((2, 2)), 0)
    np.testing.assert_array_equal(top_k_models(np.array([[0.5, 0.5, 0.9]]), 5), [[2, 0, 1]])  # ties -> lower index


def test_generated_descriptions_use_wordnet():
    wn = load_wordnet()
    caps = generate_class_descriptions(["0 - zero", "T-shirt/top", "qwertyuiop"], "digit picture",
                                       "image classification", wn)
    # "0 - zero" is split into "0" / "zero"; "0" is a lemma of the numeral synset n13742358
    assert caps[0][0] == "0 - zero which is " + wn["n13742358"].definition
    assert caps[1][0] == "T-shirt/top which is a close-fitting pullover shirt"
    assert caps[2] == ["a digit picture of a qwertyuiop.", "qwertyuiop, seen in a digit picture for image classification."]
    assert generate_class_descriptions(["x"], "d", "t") == generate_class_descriptions(["x"], "d", "t")


def test_caption_json_and_embedding(tmp_path):
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"cat": "a small feline", "dog": ["a canine", "a pet that barks"]}))
    caps = load_class_captions(path, ["dog", "cat"])
    assert caps == [["a canine", "a pet that barks"], ["a small feline"]]
    with pytest.raises(ValueError, match="bird"):
        load_class_captions(path, ["bird"])

    class Enc:  # text -> fixed vector
        table = {"a canine": [1.0, 0.0], "a pet that barks": [0.0, 2.0], "a small feline": [3.0, 4.0]}

        def encode(self, texts):
            return np.array([self.table[t] for t in texts])

    emb = embed_captions(Enc(), caps)
    np.testing.assert_allclose(emb, [[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.6, 0.8]])


def test_method_variants_and_departure_configs():
    from dataclasses import fields

    from mll.benchmark import departure_configs
    from mll.config import METHOD_VARIANTS, PIECES, MLLConfig, method_config
    rel, rec = METHOD_VARIANTS["released"], METHOD_VARIANTS["reconstruction"]
    assert rel == MLLConfig()                                         # the released method is the default
    assert (rel.graph, rel.labeling, rel.transfer, rel.class_score, rel.eq7, rel.weights, rel.prompt,
            rel.softmax_scale, rel.k_nodes, rel.alpha) == ("released", "definitions", "released", "f1", "others",
                                                           "inverse_entropy", "classname", 100.0, 5, 0.7)
    assert method_config("reconstruction", alpha=0.9, k_nodes=None) == rec.replace(alpha=0.9)
    with pytest.raises(ValueError, match="class_score"):
        MLLConfig(class_score="nope")
    with pytest.raises(ValueError, match="unknown MLLConfig fields"):
        method_config("released", alfa=0.5)
    configs = departure_configs()
    assert len(configs) == 2 + 2 * len(PIECES)
    all_fields = {f.name for f in fields(MLLConfig)}
    for piece, changed in PIECES.items():
        one = configs[f"reconstruction + released {piece}"]
        assert all(getattr(one, f) == (getattr(rel, f) if f in changed else getattr(rec, f)) for f in all_fields)
        back = configs[f"released - {piece} (reconstruction)"]
        assert all(getattr(back, f) == (getattr(rec, f) if f in changed else getattr(rel, f)) for f in all_fields)
