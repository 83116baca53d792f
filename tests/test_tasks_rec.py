"""REC task: composed scenes (seeded, unique referents, fingerprint check), label texts, fused
features in the cache, the box-head ground truth, the evaluation with --task rec / rec_expr, and
the refer-style full-scale loader on tiny files in the real format."""
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import data
import tasks  # noqa: F401
from data.cache import CacheLayout, load_npy
from data.registry import DatasetNotFoundError
from evaluation.runner import evaluate
from tasks import rec, rec_data
from tasks.fusion import bilinear_fusion
from tasks.heads import FiLMBoxHead, box_iou_pairs, box_loss
from tasks.images import grid_pool, image_array_path
from tasks.rec_scenes import CANVAS, MARGIN, box_text, build_scenes

OPTS = dict(n_scenes=10)
CANDS = ["ocr_det+bow", "ocr_det+minilm"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec_cache")
    status = rec.extract(CANDS, cache_dir=root, encoders=("minilm",), progress=False, log=lambda m: None, **OPTS)
    assert status == {c: "extracted" for c in CANDS}
    return root


def test_scenes_are_seeded_with_unique_referents_inside_the_margin():
    a, b = build_scenes("train", 12), build_scenes("train", 12)
    assert np.array_equal(a.images, b.images) and a.expressions == b.expressions
    assert not np.array_equal(a.images, build_scenes("train", 12, random_state=1).images)
    assert a.images.shape == (12, CANVAS, CANVAS, 3) and len(a.expressions) > 0
    assert (a.boxes[:, :2] >= MARGIN).all() and (a.boxes[:, 2:] <= CANVAS - MARGIN).all()
    for k in range(12):                                    # one expression never names two objects
        rows = np.flatnonzero(a.scene_index == k)
        texts = [a.expressions[i] for i in rows]
        assert len(set(texts)) == len(texts)
        assert all(t.startswith("the ") for t in texts)
    assert box_text([11.2, 44.8, 42.56, 79.5], 112, 112) == "[0.10, 0.40, 0.38, 0.71]"


def test_regenerated_scenes_are_checked_against_the_recorded_fingerprint(tmp_path, monkeypatch):
    ds = data.get_dataset("rec_scenes", "train", **OPTS)
    key = rec_data.scene_config_key("train", 10, 0, 2)
    fake = tmp_path / "rec_scenes.json"
    fake.write_text(json.dumps({"fingerprints": {key: ds.fingerprint}}))
    monkeypatch.setattr(rec_data, "BUILT_FINGERPRINTS", fake)
    assert data.get_dataset("rec_scenes", "train", **OPTS).fingerprint == ds.fingerprint
    fake.write_text(json.dumps({"fingerprints": {key: "0" * 64}}))
    with pytest.raises(ValueError, match="recipe changed"):
        data.get_dataset("rec_scenes", "train", **OPTS)


def test_extract_writes_both_label_texts_and_grid_fused_features(cache):
    layout = CacheLayout(cache)
    ds = data.get_dataset("rec_scenes", "train", **OPTS)
    n = len(ds)
    for role in ("box", "exprbox"):
        assert layout.load_caption_embedding("rec_scenes", f"{role}.minilm").shape == (n, 384)
    texts = rec.label_texts(ds, "rec_expr")
    assert texts[0].startswith(ds.expressions[0] + " [") and texts[0].endswith("]")
    maps = load_npy(image_array_path(cache, "map", "rec_scenes", "ocr_det"))
    e = layout.load_caption_embedding("rec_scenes", "expression.bow")
    x = layout.load_features("rec_scenes", "ocr_det+bow")
    np.testing.assert_allclose(x, bilinear_fusion(grid_pool(maps, 3)[ds.image_index], e), rtol=1e-5, atol=1e-6)
    for task in ("rec", "rec_expr"):
        result = evaluate(cache, cache / "res", datasets=["rec_scenes"], models=CANDS, metrics=["emms", "logme_flabel"],
                          encoders=("minilm",), task=task, progress=False, log=lambda m: None)
        assert all(np.isfinite(v) for m in result.datasets["rec_scenes"].scores.values() for v in m.values())


def test_box_head_outputs_valid_boxes_and_loss_is_zero_only_at_the_target():
    torch.manual_seed(0)
    head = FiLMBoxHead(8, 3, 5)
    out = head(torch.randn(4, 8, 3, 3), torch.randn(4, 5))
    assert out.shape == (4, 4) and (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    target = torch.tensor([[0.1, 0.2, 0.4, 0.6]])
    assert float(box_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(box_loss(target + 0.05, target)) > 0
    assert float(box_iou_pairs(torch.tensor([[0.0, 0.0, 0.5, 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))) == pytest.approx(0.5)


@pytest.mark.parametrize("mode", ["head", "finetuned"])
def test_ground_truth_trains_box_heads_and_resumes(tmp_path, mode):
    proto = dict(rec.GT_PROTOCOLS[mode], epochs=1 if mode == "finetuned" else 2, lrs=[1e-3])
    part = tmp_path / "runs.json"
    cand = "ocr_det@c4+bow" if mode == "finetuned" else CANDS[0]
    runs = rec.ground_truth([cand], cache_dir=tmp_path, partial_path=part, mode=mode, protocol=proto, progress=False,
                            log=lambda m: None, n_scenes=8)
    assert 0 <= runs[cand]["test"] <= 100
    if mode == "finetuned":
        assert runs[cand]["input_size"] == [112, 112]
    again = rec.ground_truth([cand], cache_dir=tmp_path, partial_path=part, mode=mode, protocol=proto, progress=False,
                             log=lambda m: pytest.fail(f"retrained: {m}"), n_scenes=8)
    assert again == runs


def test_refer_loader_reads_refs_pickle_and_instances(tmp_path):
    folder = tmp_path / "refcoco"
    folder.mkdir()
    refs = [{"image_id": 1, "ann_id": 7, "split": "train", "sentences": [{"sent": "left dog"}, {"sent": "the dog"}]},
            {"image_id": 1, "ann_id": 8, "split": "val", "sentences": [{"sent": "cat"}]}]
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs))
    (folder / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 20, "height": 10}],
        "annotations": [{"id": 7, "bbox": [2, 1, 8, 4]}, {"id": 8, "bbox": [0, 0, 5, 5]}]}))
    with pytest.raises(DatasetNotFoundError, match="train2014"):
        data.get_dataset("refcoco", "train", root=tmp_path)
    img_dir = tmp_path / "coco" / "train2014"
    img_dir.mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(img_dir / "COCO_train2014_000000000001.jpg")
    ds = data.get_dataset("refcoco", "train", root=tmp_path)
    assert ds.expressions == ["left dog", "the dog"] and len(ds.images) == 1
    np.testing.assert_allclose(ds.boxes[0], [2, 1, 10, 5])
    assert rec.label_texts(ds)[0] == "[0.10, 0.10, 0.50, 0.50]"
    with pytest.raises(DatasetNotFoundError, match=r"refs\(umd\).p"):
        data.get_dataset("refcocog", "train", root=tmp_path)
