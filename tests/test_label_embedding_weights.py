"""EMMS's simplex weights over K label encoders (evaluation.encoder_weights) on a small cache."""
import numpy as np
import pytest

import metrics
from data.cache import CacheLayout, save_entry
from evaluation.encoder_weights import REGISTRY_EMMS_OPTIONS, emms_encoder_weights, encoder_weight_study
from metrics.ranking import weighted_tau

N_CLASSES, PER_CLASS, D = 4, 15, 12
MODELS = ("good", "mid", "bad")


def _cache(tmp_path):
    """Features whose class signal decreases good > mid > bad; encoder "sharp" is a clean class code,
    "blurred" mixes it with noise rows, "wide" is sharp in another width (stacked by projection)."""
    rng = np.random.default_rng(0)
    layout = CacheLayout(tmp_path)
    y = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    save_entry(layout.labels("toy"), y, {"toy": 1})
    centres = rng.standard_normal((N_CLASSES, D))
    for m, signal in zip(MODELS, (3.0, 1.0, 0.1)):
        X = signal * centres[y] + rng.standard_normal((len(y), D))
        save_entry(layout.features("toy", m), X.astype(np.float32), {"toy": m})
    sharp = rng.standard_normal((N_CLASSES, 6))
    tables = {"sharp": sharp, "blurred": 0.2 * sharp + rng.standard_normal((N_CLASSES, 6)),
              "wide": sharp @ rng.standard_normal((6, 9))}
    for name, table in tables.items():
        save_entry(layout.label_embedding("toy", name), table.astype(np.float32), {"enc": name})
    return layout


def test_weights_are_the_registry_emms_and_sum_to_one(tmp_path):
    layout = _cache(tmp_path)
    from evaluation.inputs import DatasetInputs
    inputs = DatasetInputs(layout, "toy", encoders=("sharp", "blurred"))
    X, Y = inputs.features("good"), inputs.label_embeddings()
    score, t = emms_encoder_weights(X, Y)
    assert score == pytest.approx(metrics.get_metric("emms")(features=X, label_embeddings=Y), rel=1e-12)
    assert metrics.emms(X, Y, **REGISTRY_EMMS_OPTIONS) == pytest.approx(score, rel=1e-12)
    assert t.shape == (2,) and np.all(t >= 0) and t.sum() == pytest.approx(1.0)
    assert not Y.flags.writeable and not X.flags.writeable


def test_study_tables_and_weighted_tau(tmp_path):
    _cache(tmp_path)
    gt = {"toy": {"good": 90.0, "mid": 70.0, "bad": 40.0}}
    out = encoder_weight_study(tmp_path, ["toy"], list(MODELS), encoders=["sharp", "blurred", "wide"],
                               ground_truth=gt, progress=False)
    assert out["sets"] == ["sharp", "blurred", "wide", "sharp+blurred+wide"]
    entry = out["datasets"]["toy"]
    assert list(entry["weights"]) == ["sharp+blurred+wide"]
    for m in MODELS:
        t = np.array(entry["weights"]["sharp+blurred+wide"][m])
        assert t.shape == (3,) and np.all(t >= -1e-12) and t.sum() == pytest.approx(1.0)
    mean_t = out["mean_weights"]["toy"]["sharp+blurred+wide"]
    assert mean_t[1] < max(mean_t[0], mean_t[2])         # the blurred code gets less weight than a clean one
    for name in out["sets"]:
        for metric, scores in entry["scores"][name].items():
            assert set(scores) == set(MODELS) and all(np.isfinite(list(scores.values())))
            assert entry["weighted_tau"][name][metric] == pytest.approx(weighted_tau(scores, gt["toy"]))
    assert entry["weighted_tau"]["sharp+blurred+wide"]["emms"] == pytest.approx(1.0)
    assert out["mean_weighted_tau"]["sharp"]["emms"] == entry["weighted_tau"]["sharp"]["emms"]


def test_study_errors(tmp_path):
    _cache(tmp_path)
    with pytest.raises(ValueError, match="ground truth lacks"):
        encoder_weight_study(tmp_path, ["toy"], list(MODELS), encoders=["sharp"], ground_truth={"toy": {"good": 1.0}},
                             progress=False)
    with pytest.raises(ValueError, match="at least one encoder"):
        encoder_weight_study(tmp_path, ["toy"], list(MODELS), encoders=[], progress=False)
