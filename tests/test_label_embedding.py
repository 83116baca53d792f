"""Text encoders (tiny random-weight BERT / GPT-2 / open_clip built offline), class-name and caption
embeddings through the cache, and stacking."""
import json

import numpy as np
import pytest
import torch

from data.cache import CacheLayout, CacheMissingError
from Label_embedding import (TextEncoder, embed_classnames, get_text_encoder, list_text_encoders,
                             readable_classname, resolve_templates, stack_label_embeddings, write_caption_embeddings,
                             write_label_embeddings)
from Label_embedding.encoders import masked_mean

WORDS = ["a", "photo", "of", "the", "dog", "cat", "bird", "red", "car", "on", "road"]


# ---------------------------------------------------------------------------------------------------
# tiny local models
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast
    folder = tmp_path_factory.mktemp("bert-tiny")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    folder = tmp_path_factory.mktemp("gpt2-tiny")
    chars = sorted(set(bytes_to_unicode().values()))
    vocab = {c: i for i, c in enumerate(chars)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = GPT2TokenizerFast(vocab=vocab, merges=[])  # byte-level, one token per character
    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=64))
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def test_registry_has_the_paper_encoders():
    assert {"clip", "bert", "gpt2", "minilm"} <= set(list_text_encoders())


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_hf_mean_excludes_padding(name, bert_dir, gpt2_dir):
    folder = {"bert": bert_dir, "gpt2": gpt2_dir}[name]
    enc = get_text_encoder(name, model_dir=folder)
    assert enc.dim == 32
    short, long = "a red dog", "a photo of the red car on the road of the bird"
    alone = enc.encode([short])
    padded = enc.encode([short, long])          # `short` now needs many pad tokens
    assert alone.shape == (1, 32) and alone.dtype == np.float32
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)

    published = get_text_encoder(name, model_dir=folder, include_padding=True)
    p_alone, p_padded = published.encode([short]), published.encode([short, long])
    np.testing.assert_allclose(p_alone[0], alone[0], atol=1e-5)   # no padding: both rules agree
    assert np.abs(p_padded[0] - alone[0]).max() > 1e-3             # padding averaged in changes it


def test_gpt2_pads_with_eos(gpt2_dir):
    enc = get_text_encoder("gpt2", model_dir=gpt2_dir)
    assert enc.tokenizer.pad_token == enc.tokenizer.eos_token and enc.tokenizer.padding_side == "right"


def test_masked_mean_known_values():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(hidden, mask).tolist() == [[2.0, 3.0]]
    np.testing.assert_allclose(masked_mean(hidden, mask, include_padding=True).numpy(), [[104 / 3, 106 / 3]])


def test_missing_weights_name_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_SELECTOR_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "bert-large-uncased")):
        get_text_encoder("bert")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "gpt2-medium")):
        get_text_encoder("gpt2")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "open_clip" / "ViT-g-14")):
        get_text_encoder("clip")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        get_text_encoder("bert", model_dir=tmp_path / "nowhere")


def test_openclip_text_tower_from_local_file(tmp_path):
    import open_clip
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "TinyTest-ms.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    reference = open_clip.create_model("TinyTest-ms").eval()
    weights = tmp_path / "w" / "open_clip" / "TinyTest-ms" / "tag" / "open_clip_pytorch_model.bin"
    weights.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), weights)
    enc = get_text_encoder("clip", weights_dir=tmp_path / "w", arch="TinyTest-ms", pretrained="tag")
    out = enc.encode(["a photo of a dog.", "a cat"])
    assert out.shape == (2, 16) and enc.dim == 16
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        expected = reference.encode_text(open_clip.get_tokenizer("TinyTest-ms")(["a photo of a dog.", "a cat"]),
                                         normalize=True).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# class names and captions through the cache
# ---------------------------------------------------------------------------------------------------
class HashEncoder(TextEncoder):
    """Deterministic toy encoder: a pseudo-random 8-d vector per distinct text; counts its calls."""

    name = "hash"
    dim = 8

    def __init__(self, fail_after=None):
        super().__init__(batch_size=2)
        self.seen, self.fail_after = [], fail_after

    def _encode_batch(self, texts):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise RuntimeError("interrupted")
        self.seen += texts
        return np.stack([np.random.default_rng(list(t.encode())).standard_normal(8) for t in texts])


def test_embed_classnames_averages_templates():
    enc = HashEncoder()
    emb = embed_classnames(["apple_pie", "dog"], enc, templates=["a photo of a {}.", "{}"])
    one = HashEncoder().encode(["a photo of a apple pie.", "apple pie"]).mean(axis=0)
    np.testing.assert_allclose(emb[0], one, rtol=1e-6)
    assert emb.shape == (2, 8) and emb.dtype == np.float32
    verbatim = embed_classnames(["apple_pie"], HashEncoder(), templates="name", readable=False)
    np.testing.assert_allclose(verbatim[0], HashEncoder().encode(["apple_pie"])[0], rtol=1e-6)


def test_templates_and_readable_names():
    assert resolve_templates("photo") == ("a photo of a {}.",)
    assert len(resolve_templates("openai_imagenet")) == 80
    assert readable_classname("AM_General_Hummer_SUV_2000") == "AM General Hummer SUV 2000"
    assert readable_classname("cyclamen ") == "cyclamen"
    with pytest.raises(ValueError, match="placeholder"):
        resolve_templates(["no placeholder"])
    with pytest.raises(ValueError, match="unknown template set"):
        resolve_templates("fancy")


@pytest.mark.slow
def test_label_embedding_round_trip_with_minilm(tmp_path):
    path = write_label_embeddings("textures", "minilm", tmp_path, progress=False)
    assert path == CacheLayout(tmp_path).label_embedding("textures", "minilm")
    emb = CacheLayout(tmp_path).load_label_embedding("textures", "minilm")
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    direct = get_text_encoder("minilm").encode(["a photo of a brick.", "a photo of a grass.", "a photo of a gravel."])
    np.testing.assert_allclose(emb, direct, atol=1e-5)
    sims = emb @ emb.T
    assert np.all(sims[np.triu_indices(3, 1)] < 0.99)  # three different classes, three different rows
    # an existing file is kept without building the encoder (an unknown name would fail)
    assert write_label_embeddings("textures", "minilm", tmp_path, encoder_kwargs={"no_such_arg": 1}) == path
    # other class names (or templates) are re-embedded, with a note saying why
    notes = []
    write_label_embeddings("textures", "minilm", tmp_path, classnames=["a", "b"], progress=False, log=notes.append)
    assert np.load(path).shape == (2, 384) and len(notes) == 1 and "classnames" in notes[0]


def test_caption_embeddings_resume_after_interruption(tmp_path):
    layout = CacheLayout(tmp_path)
    captions = [f"caption number {i}" for i in range(7)]
    with pytest.raises(CacheMissingError, match="captions"):
        write_caption_embeddings("toy", HashEncoder(), tmp_path)
    layout.captions("toy").parent.mkdir(parents=True)
    layout.captions("toy").write_text(json.dumps(captions))
    with pytest.raises(RuntimeError, match="interrupted"):
        write_caption_embeddings("toy", HashEncoder(fail_after=4), tmp_path, chunk_size=2, progress=False)
    assert not layout.caption_embedding("toy", "hash").exists()
    second = HashEncoder()
    path = write_caption_embeddings("toy", second, tmp_path, chunk_size=2, progress=False)
    assert second.seen == captions[4:]                      # the two finished chunks were reused
    np.testing.assert_allclose(np.load(path), HashEncoder().encode(captions), rtol=1e-6)
    assert not path.with_name(path.name + ".parts").exists()


# ---------------------------------------------------------------------------------------------------
# stacking
# ---------------------------------------------------------------------------------------------------
def test_stack_equal_widths_unchanged():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    out = stack_label_embeddings([a, b])
    assert out.shape == (6, 5, 2) and out.dtype == np.float64
    assert np.array_equal(out[:, :, 0], a) and np.array_equal(out[:, :, 1], b)


def test_stack_pad_preserves_inner_products():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 7)).astype(np.float32)
    out = stack_label_embeddings([a, b], method="pad")
    assert out.shape == (4, 7, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0] @ out[:, :, 0].T, a @ a.T, rtol=1e-6)
    assert np.all(out[:, 3:, 0] == 0)
    with pytest.raises(ValueError, match="cannot shrink"):
        stack_label_embeddings([a, b], method="pad", dim=5)


def test_stack_project_deterministic_norm_preserving():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((200, 384)), rng.standard_normal((200, 1024))
    a_before = a.copy()
    out = stack_label_embeddings([a, b], method="project", random_state=5)
    assert out.shape == (200, 1024, 2)
    assert np.array_equal(a, a_before)                     # input untouched
    assert np.array_equal(out[:, :, 1], b)                 # already at the common width
    ratio = np.linalg.norm(out[:, :, 0], axis=1) ** 2 / np.linalg.norm(a, axis=1) ** 2
    assert abs(ratio.mean() - 1.0) < 0.05                  # JL: squared norms preserved on average
    assert np.array_equal(out, stack_label_embeddings([a, b], method="project", random_state=5))
    assert not np.allclose(out[:, :, 0], stack_label_embeddings([a, b], random_state=6)[:, :, 0])
    small = stack_label_embeddings([a, b], dim=64)
    assert small.shape == (200, 64, 2)


@pytest.mark.parametrize("bad,match", [([], "non-empty"), ([np.zeros((3, 2)), np.zeros((4, 2))], "disagree on N"),
                                       ([np.zeros((3, 2, 1))], "2-D"), ([np.array([[np.nan]])], "finite")])
def test_stack_validates_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        stack_label_embeddings(bad)


def test_stack_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown stacking method"):
        stack_label_embeddings([np.zeros((2, 2)), np.zeros((2, 3))], method="concat")


# ---------------------------------------------------------------------------------------------------
# the scripts' driver
# ---------------------------------------------------------------------------------------------------
def test_cli_skips_existing_files_without_loading_weights(tmp_path, capsys, monkeypatch):
    from Label_embedding.cli import ScriptDefaults, main_classnames, main_sentences
    monkeypatch.delenv("MODEL_SELECTOR_WEIGHTS", raising=False)
    layout = CacheLayout(tmp_path)
    target = layout.label_embedding("textures", "bert")
    target.parent.mkdir(parents=True)
    np.save(target, np.zeros((3, 4), dtype=np.float32))
    defaults = ScriptDefaults(encoder="bert", cache_dir=tmp_path)
    assert main_classnames(defaults, ["--datasets", "textures"]) == 0   # bert weights absent: never built
    assert "[skip]" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="bert-large-uncased"):
        main_classnames(defaults, ["--datasets", "digits"])
    assert main_sentences(defaults, ["--datasets", "flickr8k"]) == 1    # captions/flickr8k.json missing
    assert "captions/flickr8k.json" in capsys.readouterr().out
