"""VQA task: easy-VQA subset, fused features in the cache, the evaluation CLI with --task vqa,
the answer-head ground truth, and the full-scale loaders on tiny files in the real formats."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import data
import tasks  # noqa: F401
from data.cache import CacheLayout, load_npy
from data.registry import DatasetNotFoundError
from evaluation.cli import ScriptDefaults, main
from evaluation.runner import evaluate
from tasks import vqa
from tasks.fusion import bilinear_fusion
from tasks.images import image_array_path

OPTS = dict(n_images=12, n_questions=48)
CANDS = ["ocr_cls+bow", "ocr_det+bow"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_cache")
    status = vqa.extract(CANDS, cache_dir=root, encoders=("minilm",), progress=False, log=lambda m: None, **OPTS)
    assert status == {c: "extracted" for c in CANDS}
    return root


def test_easyvqa_subset_is_seeded_and_uses_the_answer_vocabulary():
    a = data.get_dataset("easyvqa_vqa", "train", **OPTS)
    b = data.get_dataset("easyvqa_vqa", "train", **OPTS)
    c = data.get_dataset("easyvqa_vqa", "train", random_state=1, **OPTS)
    assert len(a) == 48 and a.images.shape == (12, 64, 64, 3) and len(a.classes) == 13
    assert a.fingerprint == b.fingerprint != c.fingerprint
    image, question = a[0]
    assert image.size == (64, 64) and question == a.questions[0]
    assert set(a.answers) <= set(a.classes)
    with pytest.raises(ValueError, match="n_questions must be in"):
        data.get_dataset("easyvqa_vqa", "train", n_images=2, n_questions=1000)


def test_extract_writes_labels_answer_table_and_fused_features(cache):
    layout = CacheLayout(cache)
    ds = data.get_dataset("easyvqa_vqa", "train", **OPTS)
    np.testing.assert_array_equal(layout.load_labels("easyvqa_vqa"), ds.targets)
    assert layout.load_label_embedding("easyvqa_vqa", "minilm").shape == (13, 384)
    img = load_npy(image_array_path(cache, "pooled", "easyvqa_vqa", "ocr_cls"))
    q = layout.load_caption_embedding("easyvqa_vqa", "question.bow")
    x = layout.load_features("easyvqa_vqa", "ocr_cls+bow")
    np.testing.assert_allclose(x, bilinear_fusion(img[ds.image_index], q), rtol=1e-5, atol=1e-6)
    again = vqa.extract(CANDS, cache_dir=cache, encoders=("minilm",), progress=False, log=lambda m: None, **OPTS)
    assert set(again.values()) == {"skipped"}


def test_evaluate_vqa_runs_label_and_flabel_metrics(cache, tmp_path):
    result = evaluate(cache, tmp_path, datasets=["easyvqa_vqa"], models=CANDS, metrics=["emms", "logme", "logme_flabel"],
                      encoders=("minilm",), task="vqa", ground_truth={"easyvqa_vqa": {CANDS[0]: 70.0, CANDS[1]: 60.0}},
                      progress=False, log=lambda m: None)
    scores = result.datasets["easyvqa_vqa"].scores
    assert all(np.isfinite(scores[m][c]) for m in scores for c in CANDS)
    with pytest.raises(ValueError, match="source_probs"):
        evaluate(cache, tmp_path, datasets=["easyvqa_vqa"], models=CANDS, metrics=["leep"], encoders=("minilm",),
                 task="vqa", progress=False)


def test_cli_task_vqa_uses_the_task_defaults_and_prints_wall_time(cache, tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"about": "test", "group": "tiny_vqa", "tiny_vqa": {"easyvqa_vqa": {CANDS[0]: 70.0, CANDS[1]: 60.0}}}))
    defaults = ScriptDefaults(task="classification", group="cnn_group", models=None, datasets=None, metrics=None,
                              encoders=("clip",), cache_dir=cache, results_dir=str(tmp_path / "res" / "{group}"))
    main(defaults, "t", ["--task", "vqa", "--ground-truth-file", str(gt), "--encoders", "minilm", "--metrics", "emms",
                         "logme_flabel", "--no-plots", "--quiet", "--bootstrap", "50"])
    out = capsys.readouterr().out
    assert "logme_flabel/emms =" in out and "bootstrap interval" in out
    with pytest.raises(SystemExit, match="unknown task"):
        main(defaults, "t", ["--task", "no_such_task"])


def test_ground_truth_trains_heads_and_resumes(tmp_path):
    proto = dict(vqa.GT_PROTOCOLS["head"], epochs=2, lrs=[1e-3])
    part = tmp_path / "runs.json"
    runs = vqa.ground_truth(CANDS[:1], cache_dir=tmp_path, partial_path=part, mode="head", protocol=proto,
                            progress=False, log=lambda m: None, **OPTS)
    rec = runs[CANDS[0]]
    assert 0 <= rec["test"] <= 100 and rec["n_fit"] + rec["n_val"] == 48 and rec["best_lr"] == 1e-3
    again = vqa.ground_truth(CANDS[:1], cache_dir=tmp_path, partial_path=part, mode="head", protocol=proto,
                             progress=False, log=lambda m: pytest.fail(f"retrained: {m}"), **OPTS)
    assert again == runs
    with pytest.raises(ValueError, match="another protocol"):
        vqa.ground_truth(CANDS[:1], cache_dir=tmp_path, partial_path=part, mode="head", protocol=dict(proto, epochs=3),
                         progress=False, **OPTS)
    with pytest.raises(ValueError, match="mode must be one of"):
        vqa.ground_truth(CANDS[:1], cache_dir=tmp_path, partial_path=part, mode="frozen", progress=False, **OPTS)


def test_finetuned_ground_truth_trains_the_backbone_and_resumes_per_lr(tmp_path, monkeypatch):
    import tasks.heads as heads

    proto = dict(vqa.GT_PROTOCOLS["finetuned"], epochs=1, lrs=[3e-4, 3e-5], probe=dict(lrs=[1e-3], epochs=2, batch_size=64))
    part = tmp_path / "ft.json"
    real_fit, calls, state = heads.fit_head, [], {"die": True}

    def fit(model, *args, **kwargs):          # counts the end-to-end runs; the probe stage trains heads only
        if not isinstance(model, heads.FinetunedCandidate):
            return real_fit(model, *args, **kwargs)
        if state["die"] and calls:
            raise KeyboardInterrupt("killed during the second lr")
        calls.append(kwargs["lr"])
        before = [p.detach().clone() for p in model.backbone.parameters()]
        losses = real_fit(model, *args, **kwargs)
        assert any(not torch.equal(a, p) for a, p in zip(before, model.backbone.parameters())), "backbone not trained"
        return losses

    monkeypatch.setattr(heads, "fit_head", fit)
    with pytest.raises(KeyboardInterrupt):
        vqa.ground_truth(["ocr_det+bow"], cache_dir=tmp_path, partial_path=part, protocol=proto, progress=False,
                         log=lambda m: None, **OPTS)
    assert calls == [3e-4]
    state["die"] = False
    runs = vqa.ground_truth(["ocr_det+bow"], cache_dir=tmp_path, partial_path=part, protocol=proto, progress=False,
                            log=lambda m: None, **OPTS)
    assert calls == [3e-4, 3e-5]             # the re-run trained only the unfinished lr
    rec = runs["ocr_det+bow"]
    assert [r["lr"] for r in rec["per_lr"]] == [3e-4, 3e-5] and rec["input_size"] == [70, 70]
    assert 0 <= rec["test"] <= 100 and rec["best_lr"] in (3e-4, 3e-5) and rec["lr_bracketed"] is False
    assert rec["probe"]["best_lr"] == 1e-3 and 0 <= rec["probe"]["test"] <= 100


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 200, 30)).save(path)


def test_full_scale_vqa_loaders_read_the_real_formats(tmp_path):
    v = tmp_path / "vqav2"
    v.mkdir()
    (v / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps({"questions": [
        {"image_id": 1, "question": "what color?", "question_id": 10}, {"image_id": 2, "question": "how many?", "question_id": 11},
        {"image_id": 1, "question": "is it?", "question_id": 12}]}))
    (v / "v2_mscoco_train2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": 10, "multiple_choice_answer": "green"}, {"question_id": 11, "multiple_choice_answer": "2"},
        {"question_id": 12, "multiple_choice_answer": "green"}]}))
    for i in (1, 2):
        _png(tmp_path / "coco" / "train2014" / f"COCO_train2014_{i:012d}.jpg")
    ds = data.get_dataset("vqav2", "train", root=tmp_path, n_answers=1)
    assert ds.questions == ["what color?", "is it?"] and ds.classes == ["green"] and len(ds.images) == 1
    assert ds[0][0].size == (8, 8)
    c = tmp_path / "clevr"
    (c / "questions").mkdir(parents=True)
    (c / "questions" / "CLEVR_val_questions.json").write_text(json.dumps({"questions": [
        {"image_filename": "a.png", "question": "q1", "answer": "yes"}, {"image_filename": "b.png", "question": "q2", "answer": 3}]}))
    for n in ("a.png", "b.png"):
        _png(c / "images" / "val" / n)
    ds = data.get_dataset("clevr", "val", root=tmp_path)
    assert sorted(ds.classes) == ["3", "yes"] and len(ds) == 2
    q = tmp_path / "cocoqa" / "test"
    q.mkdir(parents=True)
    (q / "questions.txt").write_text("what is this\nwhat color is it\n")
    (q / "answers.txt").write_text("cat\nred\n")
    (q / "img_ids.txt").write_text("5\n6\n")
    _png(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000005.jpg")
    with pytest.raises(DatasetNotFoundError, match="COCO_train2014_000000000006.jpg"):
        data.get_dataset("cocoqa", "test", root=tmp_path)
    _png(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000006.jpg")
    assert data.get_dataset("cocoqa", "test", root=tmp_path).answers == ["cat", "red"]
    with pytest.raises(DatasetNotFoundError, match="v2_OpenEnded_mscoco_val2014_questions.json"):
        data.get_dataset("vqav2", "val", root=tmp_path)


def _tiny_fused(name, root):
    """A randomly initialised tiny model + processor of family ``name`` saved like a real checkpoint."""
    import transformers as t
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "color", "is", "the", "shape", "?", "red"]
    (root / "vocab.txt").write_text("\n".join(vocab))
    tok = t.BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    if name.startswith("vilt"):
        cfg = t.ViltConfig(**small, image_size=32, patch_size=16, vocab_size=len(vocab), max_position_embeddings=40,
                           num_labels=3, max_image_length=-1)
        model = (t.ViltForQuestionAnswering if name == "vilt_vqa" else t.ViltForImageAndTextRetrieval)(cfg)
        proc = t.ViltProcessor(image_processor=t.ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=16),
                               tokenizer=tok)
    else:
        cfg = t.BlipConfig(text_config=dict(**small, vocab_size=len(vocab), max_position_embeddings=40,
                                            encoder_hidden_size=32),
                           vision_config=dict(**small, image_size=32, patch_size=16))
        model = t.BlipForQuestionAnswering(cfg)
        proc = t.BlipProcessor(image_processor=t.BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    model.save_pretrained(root / name)
    proc.save_pretrained(root / name)


def test_fused_transformers_candidates_load_from_local_folders(tmp_path):
    from tasks import rec
    weights = tmp_path / "weights"
    weights.mkdir()
    with pytest.raises(FileNotFoundError, match="vilt_vqa"):
        vqa.extract(["vilt_vqa"], cache_dir=tmp_path, encoders=("minilm",), weights_dir=weights, progress=False,
                    log=lambda m: None, **OPTS)
    for name in ("vilt_vqa", "blip_vqa", "vilt_itm"):
        _tiny_fused(name, weights)
    status = vqa.extract(["vilt_vqa", "blip_vqa"], cache_dir=tmp_path, encoders=("minilm",), weights_dir=weights,
                         progress=False, log=lambda m: None, **OPTS)
    assert status == {"vilt_vqa": "extracted", "blip_vqa": "extracted"}
    layout = CacheLayout(tmp_path)
    for name in status:
        x = layout.load_features("easyvqa_vqa", name)
        assert x.shape == (48, 32) and np.isfinite(x).all()
    assert rec.extract(["vilt_itm"], cache_dir=tmp_path, encoders=("minilm",), weights_dir=weights, progress=False,
                       log=lambda m: None, n_scenes=6) == {"vilt_itm": "extracted"}


def test_standardiser_uses_the_fit_rows_statistics_per_column_and_per_channel():
    from tasks.heads import standard_stats, standardiser
    rows = np.array([[1.0, 5.0], [3.0, 5.0]])                     # column 2 is constant: std 1
    mean, std = standard_stats(rows)
    np.testing.assert_array_equal(mean, [[2.0, 5.0]])
    np.testing.assert_array_equal(std, [[1.0, 1.0]])
    out = standardiser((mean, std))(np.array([[4.0, 7.0]]))
    assert out.dtype == torch.float32 and out.tolist() == [[2.0, 2.0]]
    maps = np.stack([np.full((2, 3, 3), v) for v in (0.0, 2.0)]).astype(np.float32)
    maps[:, 1] *= 3                                                 # channel 1: values 0 and 6
    m, s = standard_stats(maps)
    assert m.shape == s.shape == (1, 2, 1, 1)
    np.testing.assert_allclose(standardiser((m, s))(maps).numpy()[:, :, 0, 0], [[-1, -1], [1, 1]])
    before = maps.copy()
    standardiser((m, s))(maps)
    np.testing.assert_array_equal(maps, before)                     # the caller's array is untouched
