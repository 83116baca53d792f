"""models.extract and the cache-filling driver: round trips, resume, interruption, label checks."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import models
from data.cache import CacheLayout
from models.base import FeatureModel
from models.pipeline import CacheMismatchError, extract_to_cache


class ColorModel(FeatureModel):
    """Toy model: feature = per-channel mean and max (D = 6), source head = 3 linear logits."""

    def __init__(self, name="toy", head=True):
        super().__init__(name=name, group="offline", feature_dim=6, input_hw=(8, 8), device=torch.device("cpu"),
                         num_source_classes=3 if head else None,
                         preprocess=lambda img: torch.from_numpy(np.asarray(img.resize((8, 8)), np.float32)
                                                                 .transpose(2, 0, 1) / 255.0))
        self.head = head

    def _forward(self, x):
        f = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return f, (f[:, :3] * 4.0 if self.head else None)


def color_dataset(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return [(Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)), int(i % 3)) for i in range(n)]


def test_extract_matches_per_item_features():
    m, ds = ColorModel(), color_dataset(10)
    out = models.extract(m, ds, batch_size=4, progress=False)
    assert out["features"].dtype == np.float32 and out["features"].shape == (10, 6)
    assert out["labels"].dtype == np.int64 and out["labels"].tolist() == [i % 3 for i in range(10)]
    assert "captions" not in out
    for i in (0, 9):
        f, logits = m.features_and_source_logits(m.preprocess(ds[i][0]).unsqueeze(0))
        np.testing.assert_allclose(out["features"][i], f[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(out["source_probs"][i], torch.softmax(logits[0], 0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["source_probs"].sum(1), 1.0, rtol=1e-5)
    assert models.extract(ColorModel(head=False), ds, progress=False)["source_probs"] is None
    # pre-transformed tensors are used as they are
    tensors = [(m.preprocess(img), y) for img, y in ds]
    np.testing.assert_array_equal(models.extract(m, tensors, batch_size=3, progress=False)["features"], out["features"])


def test_extract_validates_inputs():
    m = ColorModel()
    with pytest.raises(ValueError, match="batch_size"):
        models.extract(m, color_dataset(2), batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        models.extract(m, [], progress=False)
    with pytest.raises(ValueError, match="labels"):
        models.extract(m, [(img, 0.5) for img, _ in color_dataset(2)], progress=False)


def test_extract_real_offline_model():
    m = models.create_model("ocr_cls", device="cpu")
    out = models.extract(m, color_dataset(5), batch_size=2, progress=False)
    assert out["features"].shape == (5, 200) and out["source_probs"].shape == (5, 2)


class Counting:
    def __init__(self, factory):
        self.factory, self.calls = factory, []

    def __call__(self, name):
        self.calls.append(name)
        return self.factory(name)


def test_cache_roundtrip_and_resume(tmp_path):
    sets = {"a": color_dataset(9, seed=1), "b": color_dataset(6, seed=2)}
    model_f, data_f = Counting(lambda n: ColorModel(n, head=n != "nohead")), Counting(sets.__getitem__)
    res = extract_to_cache(["toy", "nohead"], ["a", "b"], cache_dir=tmp_path, model_factory=model_f,
                           dataset_factory=data_f, batch_size=4, progress=False)
    assert [r.status for r in res] == ["extracted"] * 4
    layout = CacheLayout(tmp_path)
    ref = models.extract(ColorModel(), sets["a"], progress=False)
    np.testing.assert_array_equal(layout.load_features("a", "toy"), ref["features"])
    np.testing.assert_array_equal(layout.load_source_probs("a", "toy"), ref["source_probs"])
    np.testing.assert_array_equal(layout.load_labels("a"), ref["labels"])
    assert not layout.source_probs("a", "nohead").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    model_f.calls.clear()
    res = extract_to_cache(["toy", "nohead"], ["a", "b"], cache_dir=tmp_path, model_factory=model_f,
                           dataset_factory=data_f, progress=False)
    # every model is built (to read its preprocessing for the provenance check) but none is run again
    assert [r.status for r in res] == ["skipped"] * 4 and model_f.calls == ["toy", "nohead"]


def test_interrupted_run_keeps_finished_pairs(tmp_path):
    sets = {"a": color_dataset(5, seed=1), "b": color_dataset(5, seed=2)}

    def failing(name):
        if name == "b":
            raise KeyboardInterrupt("killed while preparing b")
        return sets[name]

    with pytest.raises(KeyboardInterrupt):
        extract_to_cache(["toy"], ["a", "b"], cache_dir=tmp_path, model_factory=ColorModel,
                         dataset_factory=failing, progress=False)
    layout = CacheLayout(tmp_path)
    assert layout.features("a", "toy").is_file() and not layout.features("b", "toy").exists()
    data_f = Counting(sets.__getitem__)
    res = extract_to_cache(["toy"], ["a", "b"], cache_dir=tmp_path, model_factory=ColorModel,
                           dataset_factory=data_f, progress=False)
    assert {(r.dataset, r.status) for r in res} == {("a", "skipped"), ("b", "extracted")}
    assert data_f.calls == ["a", "b"]          # each built once (a: only to check its fingerprint)


def test_label_mismatch_is_an_error(tmp_path):
    layout = CacheLayout(tmp_path)
    layout.labels("a").parent.mkdir(parents=True)
    np.save(layout.labels("a"), np.zeros(7, dtype=np.int64))    # a labels file without provenance record
    notes = []
    extract_to_cache(["toy"], ["a"], cache_dir=tmp_path, model_factory=ColorModel,
                     dataset_factory=lambda n: color_dataset(7), progress=False, log=notes.append)
    assert any("labels" in n and "no provenance record" in n for n in notes)     # rewritten, with a note
    assert layout.load_labels("a").tolist() == [i % 3 for i in range(7)]
    # a labels entry whose record matches the data but whose content differs cannot be explained
    from data.cache import save_entry, read_record
    save_entry(layout.labels("a"), np.zeros(7, dtype=np.int64), read_record(layout.labels("a"))["made_from"])
    with pytest.raises(CacheMismatchError, match="differ"):
        extract_to_cache(["toy2"], ["a"], cache_dir=tmp_path, model_factory=ColorModel,
                         dataset_factory=lambda n: color_dataset(7), progress=False)
    assert not layout.features("a", "toy2").exists()


def test_captions_written_once(tmp_path):
    caps = [(Image.new("RGB", (4, 4), (i, i, i)), f"caption {i}") for i in range(3)]
    extract_to_cache(["toy"], ["c"], cache_dir=tmp_path, model_factory=ColorModel,
                     dataset_factory=lambda n: caps, progress=False)
    layout = CacheLayout(tmp_path)
    assert json.loads(layout.captions("c").read_text()) == ["caption 0", "caption 1", "caption 2"]
    assert layout.load_labels("c").tolist() == [0, 1, 2]
    # other captions are other data: the captions (and labels) entries are rewritten, with a note
    other = [(img, c + "!") for img, c in caps]
    notes = []
    extract_to_cache(["toy2"], ["c"], cache_dir=tmp_path, model_factory=ColorModel,
                     dataset_factory=lambda n: other, progress=False, log=notes.append)
    assert json.loads(layout.captions("c").read_text()) == ["caption 0!", "caption 1!", "caption 2!"]
    assert any("captions" in n and "different data" in n for n in notes)


def test_unknown_names_fail_before_work(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        extract_to_cache(["resnet50", "no_such_model"], ["digits"], cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_end_to_end_on_offline_data(tmp_path, capsys):
    """The script front end on a real offline dataset (sklearn digits) and a real ONNX model."""
    from models.cli import run_extraction_cli

    defaults = dict(models=["ocr_cls"], datasets=["digits"], data_root=None, cache_dir=tmp_path / "x",
                    weights_dir=None, batch_size=64, n_per_class=None, split="train")
    argv = ["--cache-dir", str(tmp_path), "--n-per-class", "3", "--batch-size", "8", "--quiet"]
    res = run_extraction_cli("test", argv, **defaults)
    assert [r.status for r in res] == ["extracted"]
    layout = CacheLayout(tmp_path)
    labels = layout.load_labels("digits")
    assert np.bincount(labels).tolist() == [3] * 10
    assert layout.load_features("digits", "ocr_cls").shape == (30, 200)
    assert layout.load_source_probs("digits", "ocr_cls").shape == (30, 2)
    assert [r.status for r in run_extraction_cli("test", argv, **defaults)] == ["skipped"]
    assert "already cached" in capsys.readouterr().out
