"""tasks.trainable: the fine-tuned ground truth starts from exactly the representation the metrics
score (same weights, same input pipeline), and the per-submodule learning rates of the optimiser."""
import numpy as np
import pytest
import torch
from torch import nn

import data
import tasks  # noqa: F401
from finetuning.engine import build_optimizer
from tasks.heads import FinetunedCandidate, ground_truth_runner, standard_stats
from tasks.images import cached_image_arrays, image_inputs
from tasks.trainable import TRAINABLE_READERS, trainable_backbone


@pytest.fixture(scope="module")
def images():
    return data.get_dataset("easyvqa_vqa", "train", n_images=4, n_questions=8).images


@pytest.mark.parametrize("name,kind,res,atol", [
    ("ocr_det", "pooled", 70, 1e-4),             # onnx2torch conversion vs onnxruntime
    ("efficientnet_lite0", "pooled", 70, 1e-3),  # torch network vs its onnxruntime export
    ("ocr_det@c4", "map", 112, 2e-2),            # maps are cached as float16
    ("ocr_det", "map", 112, 2e-2),
])
def test_trainable_backbone_at_init_equals_the_cached_features(tmp_path, images, name, kind, res, atol):
    net, preprocess = trainable_backbone(name, kind)
    x = image_inputs(preprocess, images, res, 14)
    with torch.no_grad():
        got = net.eval()(x).numpy()
    want = cached_image_arrays(tmp_path, "t", "fp", images, name, kind, resolution=res, multiple=14, progress=False)
    assert got.shape == want.shape and x.shape[2:] == (res, res)
    np.testing.assert_allclose(got, want.astype(np.float32), atol=atol * max(1.0, float(np.abs(want).max())))
    assert all(p.requires_grad for p in net.parameters())


def test_unknown_network_class_and_kind_fail_clearly(monkeypatch):
    with pytest.raises(ValueError, match="kind must be"):
        trainable_backbone("ocr_det", "tokens")
    monkeypatch.delitem(TRAINABLE_READERS._entries, "OnnxTrainable")
    with pytest.raises(NotImplementedError, match="no trainable reader for its network class 'OnnxTrainable'"):
        trainable_backbone("ocr_det", "pooled")


class _ImageOnly(nn.Module):
    def forward(self, image, text):
        return image


def test_finetuned_candidate_standardises_the_backbone_output():
    backbone = nn.Linear(3, 4)
    x = torch.randn(50, 3)
    with torch.no_grad():
        mean, std = standard_stats(backbone(x).numpy())
        z = FinetunedCandidate(backbone, _ImageOnly(), mean, std)(x, torch.zeros(50, 1)).numpy()
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    model = FinetunedCandidate(backbone, _ImageOnly(), mean, std)
    assert {n for n, _ in model.named_buffers()} == {"mean", "std"}          # fixed, not trained
    assert {n for n, _ in model.named_parameters()} == {"backbone.weight", "backbone.bias"}


def test_build_optimizer_scales_the_lr_of_a_submodule_and_keeps_decay_groups():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    opt = build_optimizer(model, "adamw", 1e-4, 0.05, lr_scales=[(model[1], 10.0)])
    groups = {(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups}
    assert groups == {(1e-4, 0.05, 1), (1e-4, 0.0, 1), (1e-3, 0.05, 1), (1e-3, 0.0, 1)}
    plain = build_optimizer(model, "adamw", 1e-4, 0.05)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in plain.param_groups] == [(1e-4, 0.05, 2), (1e-4, 0.0, 2)]
    with pytest.raises(ValueError, match="positive"):
        build_optimizer(model, "adamw", 1e-4, 0.05, lr_scales=[(model[1], 0.0)])


def test_ground_truth_runner_names_the_modes():
    assert ground_truth_runner("head").__name__ == "head_ground_truth"
    assert ground_truth_runner("finetuned").__name__ == "finetuned_ground_truth"
    with pytest.raises(ValueError, match="mode must be one of"):
        ground_truth_runner("trained")


def test_probe_agreement_is_kendall_tau_of_fine_tuned_vs_probe_stage():
    from tasks.pipeline import probe_agreement

    runs = {c: {"test": t, "probe": {"test": p}} for c, t, p in
            (("a", 90.0, 80.0), ("b", 85.0, 82.0), ("c", 70.0, 60.0), ("d", 60.0, 61.0))}
    agree = probe_agreement(runs)
    assert agree["n"] == 4 and agree["kendall_tau"] == pytest.approx(1 / 3, abs=1e-4)   # 2 of 6 pairs discordant
    assert probe_agreement({"a": {"test": 1.0}}) is None
