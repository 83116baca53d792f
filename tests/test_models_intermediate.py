"""Intermediate-layer candidates, one forward pass per network family, and faster inference settings."""
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

import models
from data.cache import CacheLayout, read_record
from models import intermediate
from models.intermediate import FAMILIES, build_family_model, family_of, intermediate_candidates
from models.pipeline import extract_to_cache, model_record, static_model_record


@pytest.fixture(scope="module")
def photos():
    return [Image.fromarray(a) for a in load_sample_images().images]


def small_dataset(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [(Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)), int(i % 2)) for i in range(n)]


def test_candidates_registered_with_families():
    offline = models.list_models("offline")
    packaged = [n for n in offline if family_of(n) is not None]
    assert len(packaged) == 20 and len(intermediate_candidates()) == 13
    assert intermediate_candidates("dinov2_s") == ["dinov2_s@block4", "dinov2_s@block8"]
    for name in intermediate_candidates():
        network, _, layer = name.partition("@")
        assert family_of(name) == network and layer
        assert models.model_info(name).trainable is not None
    assert family_of("resnet50") is None and static_model_record("resnet50") is None


@pytest.mark.parametrize("name,backend", [("efficientnet_lite0", "torch"), ("efficientnet_lite2@blocks5", "torch"),
                                          ("efficientnet_lite0@blocks3", "onnxruntime"), ("ocr_cls", None),
                                          ("ocr_cls@stage3", None), ("ocr_det@c4", None), ("ocr_rec@stage3", None)])
def test_static_record_equals_built_model_record(name, backend, monkeypatch):
    """The record written without building the model is the one of create_model(name)."""
    if backend is not None:
        monkeypatch.setattr(models.efficientnet_lite, "LITE_BACKEND", backend)
    assert static_model_record(name, "cpu") == model_record(name, models.create_model(name, device="cpu"))


def test_static_record_follows_the_device_backend():
    """CUDA runs EfficientNet-Lite on torch, the CPU on onnxruntime: the records name the class used."""
    cpu, cuda = static_model_record("efficientnet_lite0", "cpu"), static_model_record("efficientnet_lite0", "cuda")
    assert cpu["class"].endswith("LiteOrtFeatureModel") and cuda["class"].endswith("HookedFeatureModel")
    assert static_model_record("ocr_cls", "cpu") == static_model_record("ocr_cls", "cuda")


@pytest.mark.parametrize("family", ["efficientnet_lite0", "ocr_det", "ocr_cls"])
def test_family_pass_equals_separate_models(family, photos, monkeypatch):
    monkeypatch.setattr(models.efficientnet_lite, "LITE_BACKEND", "torch")   # onnxruntime: next test
    names = list(FAMILIES[family].members)
    multi = build_family_model(names, device="cpu")
    x = torch.stack([multi.preprocess(p) for p in photos])
    outs = multi.features_and_source_logits_multi(x)
    assert list(outs) == names
    for name in names:
        single = models.create_model(name, device="cpu")
        assert torch.equal(single.preprocess(photos[0]), x[0])
        f, logits = single.features_and_source_logits(x)
        assert outs[name][0].shape == (2, single.feature_dim)
        torch.testing.assert_close(outs[name][0], f, rtol=1e-5, atol=1e-6)
        if logits is None:
            assert outs[name][1] is None
        else:
            torch.testing.assert_close(outs[name][1], logits, rtol=1e-5, atol=1e-6)
    # an intermediate feature is not the final one (a different, smaller representation)
    assert multi.outputs[names[1]][0] < multi.outputs[names[0]][0]


def test_lite_onnxruntime_matches_torch(photos):
    """CPU inference of EfficientNet-Lite runs on its ONNX export: the same features and logits."""
    names = list(FAMILIES["efficientnet_lite0"].members)
    fast = build_family_model(names, device="cpu")
    assert type(fast).__name__ == "LiteOrtMultiModel"
    x = torch.stack([fast.preprocess(p) for p in photos])
    outs = fast.features_and_source_logits_multi(x)
    from models.efficientnet_lite import LITE_SPECS, build_lite_multi
    from models.intermediate import LITE_LAYERS

    plain = build_lite_multi(LITE_SPECS[0], [la for la in LITE_LAYERS if la.parent == LITE_SPECS[0]], True,
                             torch.device("cpu"), backend="torch", channels_last=False)
    want = plain.features_and_source_logits_multi(x)
    for name in names:
        torch.testing.assert_close(outs[name][0], want[name][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs["efficientnet_lite0"][1], want["efficientnet_lite0"][1], rtol=1e-4, atol=1e-4)


def test_intermediate_pass_stops_at_its_layer(photos):
    from models.efficientnet_lite import build_lite_layer
    from models.intermediate import LITE_LAYERS

    m = build_lite_layer(LITE_LAYERS[0], None, torch.device("cpu"), True, backend="torch")
    ran = []
    m.network.blocks[4].register_forward_hook(lambda *a: ran.append(1))
    feats, logits = m.features_and_source_logits(torch.stack([m.preprocess(p) for p in photos]))
    assert feats.shape == (2, 80) and logits is None and not ran and m.num_source_classes is None


def test_channels_last_matches_contiguous(photos):
    from models.efficientnet_lite import LITE_SPECS, build_lite

    fast = build_lite(LITE_SPECS[0], None, torch.device("cpu"), True, channels_last=True, backend="torch")
    plain = build_lite(LITE_SPECS[0], None, torch.device("cpu"), True, channels_last=False, backend="torch")
    x = torch.stack([fast.preprocess(p) for p in photos])
    assert fast.network.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.network.conv_stem.weight.is_contiguous()
    torch.testing.assert_close(fast.features(x), plain.features(x), rtol=1e-4, atol=1e-5)


def test_build_family_model_rejects_mixed_networks():
    with pytest.raises(ValueError, match="one network family"):
        build_family_model(["ocr_cls", "ocr_det@c3"])
    with pytest.raises(ValueError, match="one network family"):
        build_family_model(["resnet50"])


def test_extract_to_cache_one_pass_equals_separate(tmp_path, monkeypatch):
    names = ["ocr_cls@stage3", "ocr_det@c3", "ocr_cls", "ocr_det@c4"]
    sets = {"a": small_dataset(5, 1), "b": small_dataset(4, 2)}
    calls = []
    real_build = intermediate.build_family_model

    def counting(names_, **kw):
        calls.append(list(names_))
        return real_build(names_, **kw)

    monkeypatch.setattr(intermediate, "build_family_model", counting)
    res = extract_to_cache(names, ["a", "b"], cache_dir=tmp_path / "one", dataset_factory=sets.__getitem__,
                           batch_size=2, progress=False)
    assert [(r.model, r.dataset, r.status) for r in res] == [(m, d, "extracted") for m in names for d in "ab"]
    # one multi-output model per family, reused for both datasets
    assert sorted(map(sorted, calls)) == [["ocr_cls", "ocr_cls@stage3"], ["ocr_det@c3", "ocr_det@c4"]]
    one = CacheLayout(tmp_path / "one")
    for name in names:      # each candidate alone, into another cache: the same records and files
        extract_to_cache([name], ["a", "b"], cache_dir=tmp_path / name, dataset_factory=sets.__getitem__,
                         batch_size=2, progress=False)
        alone = CacheLayout(tmp_path / name)
        for d in "ab":
            np.testing.assert_allclose(one.load_features(d, name), alone.load_features(d, name), rtol=1e-5, atol=1e-6)
            assert read_record(one.features(d, name))["made_from"] == read_record(alone.features(d, name))["made_from"]
            assert one.source_probs(d, name).exists() == (name == "ocr_cls")
            np.testing.assert_array_equal(one.load_labels(d), alone.load_labels(d))
    # resume: every pair valid -> nothing is built (records are described without the weights)

    def forbidden(*a, **k):
        raise AssertionError("a model was built although every pair is cached")

    monkeypatch.setattr(intermediate, "build_family_model", forbidden)
    monkeypatch.setattr(models.registry, "create_model", forbidden)
    monkeypatch.setattr(models.pipeline, "create_model", forbidden)
    res = extract_to_cache(names, ["a", "b"], cache_dir=tmp_path / "one", dataset_factory=sets.__getitem__,
                           progress=False)
    assert [r.status for r in res] == ["skipped"] * 8


def test_family_resume_rebuilds_only_stale_member(tmp_path, monkeypatch):
    sets = {"a": small_dataset(4, 3)}
    names = ["ocr_cls", "ocr_cls@stage3"]
    extract_to_cache(names, ["a"], cache_dir=tmp_path, dataset_factory=sets.__getitem__, progress=False)
    layout = CacheLayout(tmp_path)
    layout.features("a", "ocr_cls@stage3").write_bytes(b"corrupt")
    built = []
    real_create = models.pipeline.create_model
    monkeypatch.setattr(models.pipeline, "create_model", lambda n, **k: built.append(n) or real_create(n, **k))
    notes = []
    res = extract_to_cache(names, ["a"], cache_dir=tmp_path, dataset_factory=sets.__getitem__, progress=False,
                           log=notes.append)
    assert [r.status for r in res] == ["skipped", "extracted"] and built == ["ocr_cls@stage3"]
    assert any("ocr_cls@stage3" in n and "corrupt" in n for n in notes)
    assert layout.load_features("a", "ocr_cls@stage3").shape == (4, 104)


def test_lite_intermediate_trainable_is_the_cut_network(photos, monkeypatch):
    monkeypatch.setattr(models.efficientnet_lite, "LITE_BACKEND", "torch")
    fm = models.create_model("efficientnet_lite0@blocks3", device="cpu")
    net, preprocess = models.create_trainable("efficientnet_lite0@blocks3", 3)
    x = torch.stack([preprocess(p) for p in photos])
    assert len(net.blocks) == 4 and all(p.requires_grad for p in net.parameters())
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), fm.features(x), rtol=1e-4, atol=1e-5)
    net.train()
    net(x).sum().backward()
    assert net.conv_stem.weight.grad is not None and net.head.weight.grad is not None


def test_onnx_intermediate_trainable_matches_onnxruntime(photos):
    fm = models.create_model("ocr_cls@stage3", device="cpu")
    net, preprocess = models.create_trainable("ocr_cls@stage3", 2)
    x = torch.stack([preprocess(p) for p in photos])
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), fm.features(x), atol=1e-3, rtol=1e-3)
        assert net(x).shape == (2, 2)


def test_onnx_session_options():
    from models.onnx_zoo import session_options

    tuned = session_options(True)
    assert tuned.intra_op_num_threads == torch.get_num_threads()
    assert session_options(False).intra_op_num_threads == 0        # onnxruntime's default


@pytest.mark.parametrize("hw", [64, 112])
def test_lite_onnxruntime_takes_other_input_sizes_like_torch(hw):
    # the MLL stand-ins feed 64-128 px images and the fine-tuning protocol 112 px: the export's
    # spatial axes are dynamic, and the features agree with the torch forward at every size
    import torch

    from models.efficientnet_lite import LITE_SPECS, build_lite

    cpu = torch.device("cpu")
    ort = build_lite(LITE_SPECS[0], None, cpu, True)
    ref = build_lite(LITE_SPECS[0], None, cpu, True, backend="torch")
    x = torch.randn(2, 3, hw, hw, generator=torch.Generator().manual_seed(hw))
    a, la = ort.features_and_source_logits(x)
    b, lb = ref.features_and_source_logits(x)
    assert a.shape == (2, 1280) and la.shape == (2, 1000)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-4 * float(lb.abs().max()))
