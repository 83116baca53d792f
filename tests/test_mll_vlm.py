"""The VLM interface: registry, ConSE stand-in maths (fake backbone / encoder), open_clip local loading."""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

import mll
from mll.vlm import (CONSE_CONFIGS, ConSEConfig, ConSEVLM, OpenCLIPVLM, create_vlm, imagenet_label_texts,
                     list_vlms, openclip_weights_path)


class HashEncoder:
    """text -> a fixed pseudo-random 16-d vector (not normalised)."""

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        return np.stack([np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)).standard_normal(16)
                         for t in texts])


class SpikeBackbone:
    """An 'ImageNet classifier' whose logits are 2 at class (red value) and 1 at class (green value)."""

    def __init__(self):
        self.seen_sizes = []

    def preprocess(self, im):
        return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)

    def features_and_source_logits(self, x):
        self.seen_sizes.append(tuple(x.shape[-2:]))
        logits = torch.zeros(x.shape[0], 1000)
        for i in range(x.shape[0]):
            logits[i, int(x[i, 0].mean().round())] = 2.0
            logits[i, int(x[i, 1].mean().round())] = 1.0
        return None, logits


def image(r, g):
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[..., 0], arr[..., 1] = r, g
    return Image.fromarray(arr)


def test_registry_lists_both_hubs():
    offline = list_vlms("offline")
    assert len(offline) == 9 + len(mll.aligned.ALIGNED_SPECS) and offline[0] == "conse-lite0-names"
    assert all(n.startswith("conse-") for n in offline[:9]) and all(n.startswith("aligned-") for n in offline[9:])
    assert len(list_vlms("openclip")) == 49 and "ViT-B-32@openai" in list_vlms("openclip")
    assert len(mll.openclip_hub()) == 49
    with pytest.raises(KeyError, match="unknown VLM"):
        create_vlm("no-such-model")
    with pytest.raises(ValueError, match="unknown VLM group"):
        list_vlms("nope")


def test_imagenet_label_texts():
    names = imagenet_label_texts("names")
    assert len(names) == 1000 and names[0] == "tench"
    assert imagenet_label_texts("definitions")[0].startswith("tench which is ")
    with pytest.raises(ValueError, match="unknown ImageNet label style"):
        imagenet_label_texts("klingon")


def test_conse_embedding_matches_hand_computation():
    enc, bb = HashEncoder(), SpikeBackbone()
    cfg = ConSEConfig("t", "names", top_t=2, temperature=1.0, templates=("{}",))
    vlm = ConSEVLM("conse-test", "fake", cfg, backbone=bb, text_encoder=enc)
    emb = vlm.encode_images([image(3, 7), image(10, 20)])
    names = imagenet_label_texts("names")
    u = {j: (lambda v: v / np.linalg.norm(v))(enc.encode([names[j]])[0]) for j in (3, 7, 10, 20)}
    z = np.e ** 2 + np.e + 998                         # softmax denominator: logits (2, 1, 0 x 998)
    for row, (a, b) in zip(emb, [(3, 7), (10, 20)]):
        expected = (np.e ** 2 / z) * u[a] + (np.e / z) * u[b]   # top-2 classes, weights p_j
        np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    # zero-shot: image 1's embedding is closest to the prompt of its top ImageNet class
    logits = vlm.zero_shot_logits([image(3, 7)], [names[3], names[10], [names[20], names[21]]])
    assert logits.shape == (1, 3) and int(np.argmax(logits)) == 0
    np.testing.assert_allclose(logits[0, 0] / vlm.logit_scale, emb[0] @ u[3], atol=1e-5)


def test_conse_top1_and_resize():
    bb = SpikeBackbone()
    cfg = ConSEConfig("t", "names", top_t=1, temperature=1.0, templates=("{}",))
    vlm = ConSEVLM("c", "fake", cfg, backbone=bb, text_encoder=HashEncoder(), image_size=32)
    assert vlm.image_feature_key == "imagenet_logits-fake-32px"
    feats = vlm.image_features([image(5, 6)])
    assert bb.seen_sizes == [(32, 32)] and feats.shape == (1, 1000)
    # T = 1: the embedding is exactly the text embedding of the top class
    u5 = vlm.label_embeddings()[5]
    np.testing.assert_allclose(vlm.embed_image_features(feats)[0], u5, atol=1e-6)
    with pytest.raises(ValueError, match="top_t"):
        ConSEVLM("c", "fake", ConSEConfig("t", "names", 0, 1.0, ("{}",)), backbone=bb, text_encoder=HashEncoder())
    with pytest.raises(ValueError, match="1000"):
        vlm.embed_image_features(np.zeros((2, 10)))


def test_conse_label_embeddings_disk_cache(tmp_path, monkeypatch):
    import mll.vlm as v
    enc = HashEncoder()
    cfg = ConSEConfig("t", "names", 3, 1.0, ("a photo of a {}.",))
    monkeypatch.setattr(v, "_shared_text_encoder", lambda name: enc)
    monkeypatch.setitem(v._TEXT_MEMOS, "minilm", {})
    first = ConSEVLM("c1", "fake", cfg, backbone=SpikeBackbone(), cache_dir=tmp_path).label_embeddings()
    calls = enc.calls
    v._TEXT_MEMOS["minilm"].clear()
    second = ConSEVLM("c2", "fake", cfg, backbone=SpikeBackbone(), cache_dir=tmp_path).label_embeddings()
    assert enc.calls == calls                          # read from {cache}/mll/text/minilm/...
    np.testing.assert_array_equal(first, second)
    assert len(list((tmp_path / "mll" / "text" / "minilm").glob("imagenet-names-*.npy"))) == 1


def test_stand_ins_differ():
    keys = {(c.label_style, c.top_t, c.temperature, c.templates) for c in CONSE_CONFIGS}
    assert len(keys) == len(CONSE_CONFIGS) == 3


def test_openclip_missing_weights_names_path(tmp_path, monkeypatch):
    monkeypatch.delenv("MLL_OPENCLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("MODEL_SELECTOR_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="MLL_OPENCLIP_WEIGHTS"):
        openclip_weights_path("ViT-B-32", "openai")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "ViT-B-32" / "openai")):
        create_vlm("ViT-B-32@openai", weights_dir=tmp_path)


def test_openclip_loads_local_file(tmp_path):
    import open_clip
    from open_clip import factory
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                           "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    factory._MODEL_CONFIGS["mll-test-tiny"] = cfg
    try:
        torch.manual_seed(0)
        ref = open_clip.create_model("mll-test-tiny").eval()
        folder = tmp_path / "mll-test-tiny" / "local"
        folder.mkdir(parents=True)
        torch.save(ref.state_dict(), folder / "open_clip_pytorch_model.bin")
        vlm = OpenCLIPVLM("mll-test-tiny", "local", weights_dir=tmp_path, device="cpu")
        assert vlm.name == "mll-test-tiny@local"
        texts = vlm.encode_texts(["a photo of a cat.", "a photo of a dog."])
        with torch.no_grad():
            expected = ref.encode_text(open_clip.get_tokenizer("mll-test-tiny")(["a photo of a cat.",
                                                                                   "a photo of a dog."])).numpy()
        np.testing.assert_allclose(texts, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
        imgs = vlm.encode_images([image(10, 200), image(200, 10)])
        assert imgs.shape == (2, 16)
        np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, atol=1e-5)
        assert vlm.zero_shot_logits([image(1, 2)], ["a cat", "a dog"]).shape == (1, 2)
        # the caches' record of the weights follows their content, not the file's size and mtime
        import os
        weights = folder / "open_clip_pytorch_model.bin"
        before, st = vlm.image_stage_record(), weights.stat()
        assert vlm.text_stage_record()["weights"] == before["weights"]
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert weights.stat().st_size == st.st_size and weights.stat().st_mtime_ns == st.st_mtime_ns
        assert vlm.image_stage_record()["weights"] != before["weights"]
    finally:
        factory._MODEL_CONFIGS.pop("mll-test-tiny", None)


@pytest.mark.slow
def test_real_conse_stand_in_on_sample_photos():
    """conse-lite0-names (real EfficientNet-Lite0 + MiniLM) tells the flower photo from the temple."""
    from sklearn.datasets import load_sample_images
    photos = [Image.fromarray(a) for a in load_sample_images().images]       # china (temple), flower
    vlm = create_vlm("conse-lite0-names")
    logits = vlm.zero_shot_logits(photos, [vlm.prompts_for("temple"), vlm.prompts_for("flower")])
    assert list(np.argmax(logits, axis=1)) == [0, 1]
