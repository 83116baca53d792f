"""MLL selection (Eq. 5-7) and reuse (Eq. 8-10) on small cases checked by hand."""
import json
import math

import numpy as np
import pytest

from mll.reuse import ensemble_confidence, ensemble_predict, entropy, entropy_weights, top_k_models
from mll.selection import (embed_captions, generate_class_descriptions, load_class_captions, node_precision,
                           predicted_class_performance, reuse_metric, select_models, selected_nodes,
                           transfer_matrix)
from mll.wordnet import load_wordnet

# two classes, three graph nodes in 2-D: cos(class0, nodes) = (1, .6, 0), cos(class1, nodes) = (0, .8, 1)
CLASSES = np.array([[1.0, 0.0], [0.0, 1.0]])
NODES = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
LABELS = np.array([[0.9, 0.5, 0.1],    # model A: a_A(v) per node
                   [0.2, 0.6, 0.8]])   # model B


def test_transfer_matrix_top2_by_hand():
    t = transfer_matrix(CLASSES, NODES, k_nodes=2)
    # class 0 keeps nodes 0 (1.0) and 1 (0.6): 1/1.6, 0.6/1.6; class 1 keeps nodes 2 (1.0) and 1 (0.8)
    np.testing.assert_allclose(t, [[1 / 1.6, 0.6 / 1.6, 0.0], [0.0, 0.8 / 1.8, 1 / 1.8]])
    np.testing.assert_array_equal(selected_nodes(t), [0, 1, 2])


def test_transfer_matrix_top1_selects_subset_and_eq5():
    t = transfer_matrix(CLASSES, NODES, k_nodes=1)
    np.testing.assert_allclose(t, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(selected_nodes(t), [0, 2])
    np.testing.assert_allclose(node_precision(LABELS, t), [[0.9, 0.1], [0.2, 0.8]])   # Eq. 5: labels on V_S


def test_predicted_performance_and_reuse_metric_by_hand():
    t = transfer_matrix(CLASSES, NODES, k_nodes=2)
    p = predicted_class_performance(t, LABELS)                       # Eq. 6, (C, M)
    pa0 = 0.625 * 0.9 + 0.375 * 0.5                                  # 0.75
    pb0 = 0.625 * 0.2 + 0.375 * 0.6                                  # 0.35
    pa1 = (0.8 * 0.5 + 1.0 * 0.1) / 1.8                              # 0.2778
    pb1 = (0.8 * 0.6 + 1.0 * 0.8) / 1.8                              # 0.7111
    np.testing.assert_allclose(p, [[pa0, pb0], [pa1, pb1]])
    r = reuse_metric(p, alpha=0.7)                                   # Eq. 7
    mean_a, mean_b = (pa0 + pa1) / 2, (pb0 + pb1) / 2
    np.testing.assert_allclose(r, [[0.7 * pa0 + 0.3 * mean_a, 0.7 * pb0 + 0.3 * mean_b],
                                   [0.7 * pa1 + 0.3 * mean_a, 0.7 * pb1 + 0.3 * mean_b]])
    np.testing.assert_allclose(r[0, 0], 0.6791667, atol=1e-6)
    np.testing.assert_array_equal(top_k_models(r, 1), [[0], [1]])    # A for class 0, B for class 1
    # alpha = 0: only the overall performance counts -> B (0.5306 > 0.5139) everywhere
    np.testing.assert_array_equal(top_k_models(reuse_metric(p, 0.0), 1), [[1], [1]])


def test_select_models_wrapper_and_no_mutation():
    c, n, lab = CLASSES.copy(), NODES.copy(), LABELS.copy()
    res = select_models(lab, ["A", "B"], c, n, ["c0", "c1"], k_nodes=2, alpha=0.7)
    np.testing.assert_array_equal(c, CLASSES)
    np.testing.assert_array_equal(n, NODES)
    np.testing.assert_array_equal(lab, LABELS)
    np.testing.assert_allclose(res.scores, reuse_metric(res.predicted, 0.7))
    sub = res.restrict(["B"], 0.7)
    np.testing.assert_allclose(sub.predicted[:, 0], res.predicted[:, 1])


def test_selection_input_validation():
    with pytest.raises(ValueError, match="k_nodes"):
        transfer_matrix(CLASSES, NODES, k_nodes=4)
    with pytest.raises(ValueError, match="no graph node with positive"):
        transfer_matrix(np.array([[-1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), k_nodes=1)
    with pytest.raises(ValueError, match="alpha"):
        reuse_metric(np.ones((2, 2)), 1.5)


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
    conf = ensemble_confidence(probs, both, eps)                      # Eq. 8
    np.testing.assert_allclose(conf[0], [w_a * 0.9 + w_b * 0.5, w_a * 0.1 + w_b * 0.5])
    np.testing.assert_allclose(conf[0], [0.627705, 0.372295], atol=1e-5)


def test_k1_ensemble_uses_each_class_model():
    probs = np.array([[[0.9, 0.1], [0.3, 0.7]],                      # model A on two images
                      [[0.5, 0.5], [0.6, 0.4]]])                     # model B
    per_class = np.array([[0], [1]])                                  # class 0 -> A, class 1 -> B
    pred, conf = ensemble_predict(probs, per_class)
    np.testing.assert_allclose(conf, [[0.9, 0.5], [0.3, 0.4]])        # conf_c = p_{m_c}(c|x)
    np.testing.assert_array_equal(pred, [0, 1])                       # Eq. 10


def test_reuse_validation():
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
