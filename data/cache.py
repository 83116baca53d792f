"""The on-disk cache layout shared by the extraction and evaluation scripts, and its provenance records.

Every array is one ``.npy`` file, written atomically (temporary file in the same directory, then
``os.replace``), so a killed run never leaves a half-written file and a re-run skips what exists::

    {root}/
      labels/{dataset}.npy                         (N,)    int64   target labels, sample order shared
                                                                   by every model of the dataset
      features/{dataset}/{model}.npy               (N, D)  float32 penultimate features of `model`
      source_probs/{dataset}/{model}.npy           (N, Cs) float32 softmax of the model's own source
                                                                   head (LEEP; argmax gives NCE's z)
      label_embeddings/{dataset}/{encoder}.npy     (C, E)  float32 class-name embedding, row c for
                                                                   class id c (per-sample F-labels
                                                                   are rows indexed by the labels)
      caption_embeddings/{dataset}/{encoder}.npy   (N, E)  float32 per-sample caption embedding
      captions/{dataset}.json                      list of N caption strings (captioning sets)

Sample order: extraction iterates the dataset in a fixed order (after an optional per-class
subsample with a fixed seed), so row i of every file of one dataset is the same image.

Provenance (``docs/data.md``, "Cache provenance"). Every entry written by the pipelines
(:func:`save_entry`) has a record ``{file}.record.json`` next to it::

    {"format": 1, "file": "resnet50.npy", "sha256": "<hash of the file's bytes>", "bytes": 123,
     "shape": [N, D], "dtype": "float32", "made_from": {...}}

``made_from`` says what the entry was computed from (dataset fingerprint of :mod:`data.fingerprint`,
model and preprocessing, encoder, templates, class names, ...). An entry is reused only when
:func:`check_entry` finds its record readable, its ``made_from`` equal to what the caller would make
it from now, and the file's sha256 equal to the recorded one (which also catches truncated, empty or
garbage files, and a record left next to another writer's data). Otherwise the caller recomputes it,
printing one line with the reason (:func:`stale_note`); entries without a record (older code) are
recomputed too. The data file is written before its record, each atomically, both under
:func:`entry_lock` (``fcntl.flock`` on ``.{file}.lock``), so two runs sharing a cache directory
never mix one's data with the other's record and compute a shared entry once.

Reading goes through :func:`load_npy`: a missing file raises :class:`CacheMissingError`, an
unreadable one or one that disagrees with its record :class:`CacheCorruptError`, each naming the
file and the fix, never numpy's traceback.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

from .fingerprint import file_sha256

try:  # POSIX advisory locks; without them (Windows) entries are still written atomically
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["CacheLayout", "atomic_write", "atomic_save_npy", "atomic_save_json", "load_npy", "load_entry", "load_json",
           "CacheMissingError", "CacheCorruptError", "RECORD_SUFFIX", "record_path", "read_record",
           "save_entry", "save_json_entry", "check_entry", "check_record", "EntryCheck", "entry_lock", "remove_stale_temps",
           "stale_note", "cached_array",
           "describe_difference"]

RECORD_FORMAT = 1
RECORD_SUFFIX = ".record.json"
#: what a failed ``np.load`` of a damaged file raises (empty: EOFError; truncated / garbage: ValueError)
_LOAD_ERRORS = (ValueError, OSError, EOFError, pickle.UnpicklingError, SyntaxError, IndexError, MemoryError)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class CacheMissingError(FileNotFoundError):
    """A cache file the caller needs does not exist (the message names it and the script that makes it)."""


class CacheCorruptError(ValueError):
    """A cache file cannot be read or disagrees with its provenance record (the message names it and the fix)."""


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then rename it onto ``path``:
    readers see either the old file or the complete new one, never a partial write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class _HashingWriter:
    """File-like wrapper that hashes every byte written through it."""

    def __init__(self, fh):
        self.fh, self.hash, self.size = fh, hashlib.sha256(), 0

    def write(self, data) -> int:
        data = bytes(data)
        self.hash.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save ``array`` to ``path`` (.npy) atomically; parent folders are created (no record)."""
    path = Path(path)
    arr = np.asarray(array)
    atomic_write(path, lambda fh: np.save(fh, arr, allow_pickle=False))
    return path


def atomic_save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    data = json.dumps(obj, indent=2, sort_keys=False).encode()
    atomic_write(path, lambda fh: fh.write(data))
    return path


# -- provenance records ----------------------------------------------------------------------------
def record_path(path: str | os.PathLike) -> Path:
    """The provenance record of cache file ``path``: ``{path}.record.json``."""
    path = Path(path)
    return path.with_name(path.name + RECORD_SUFFIX)


def _normalise(made_from: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(made_from), sort_keys=True, default=str))


@contextlib.contextmanager
def entry_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive ``fcntl.flock`` on ``.{name}.lock`` next to ``path`` (blocks until it is free)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.{name}.*.tmp``, its record's too) that :func:`atomic_write`
    of ``path`` left behind when its writer was killed mid-write (``os._exit``, SIGKILL, a lost
    cluster worker). Call it only under :func:`entry_lock` of ``path``, whose holder is the only
    writer of these names; returns the files removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def _write_record(path: Path, digest: str, size: int, made_from: Mapping[str, Any], **extra) -> None:
    atomic_save_json(record_path(path), {"format": RECORD_FORMAT, "file": path.name, "sha256": digest,
                                         "bytes": int(size), **extra, "made_from": _normalise(made_from)})


def save_entry(path: str | os.PathLike, array: np.ndarray, made_from: Mapping[str, Any]) -> Path:
    """Save ``array`` atomically and then its record (sha256 of the bytes written + ``made_from``).

    Call it under :func:`entry_lock` when other runs may write the same entry."""
    path = Path(path)
    arr = np.asarray(array)
    box = {}

    def write(fh):
        w = _HashingWriter(fh)
        np.save(w, arr, allow_pickle=False)
        box["w"] = w

    atomic_write(path, write)
    _write_record(path, box["w"].hash.hexdigest(), box["w"].size, made_from,
                  shape=list(arr.shape), dtype=arr.dtype.str)
    return path


def save_json_entry(path: str | os.PathLike, obj: Any, made_from: Mapping[str, Any]) -> Path:
    """:func:`save_entry` for a JSON document (e.g. ``captions/{dataset}.json``)."""
    path = Path(path)
    data = json.dumps(obj, indent=2).encode()
    atomic_write(path, lambda fh: fh.write(data))
    _write_record(path, hashlib.sha256(data).hexdigest(), len(data), made_from)
    return path


def read_record(path: str | os.PathLike) -> Optional[dict]:
    """The record of cache file ``path``, None without one; :class:`CacheCorruptError` if unreadable."""
    rec = record_path(path)
    try:
        text = rec.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheCorruptError(f"provenance record {rec} cannot be read ({exc}); delete it and {Path(path).name} "
                                "to recompute the entry") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CacheCorruptError(f"provenance record {rec} is corrupt ({exc}); delete it and {Path(path).name} "
                                "to recompute the entry") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sha256"), str) or not isinstance(doc.get("made_from"), dict):
        raise CacheCorruptError(f"provenance record {rec} is corrupt (not a record of format {RECORD_FORMAT}); "
                                f"delete it and {Path(path).name} to recompute the entry")
    return doc


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any], _prefix: str = "") -> str:
    """One phrase naming the first field where two ``made_from`` records differ."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "dataset" and isinstance(a, dict) and isinstance(b, dict):
            if a.get("n") != b.get("n"):
                return f"made from different data ({a.get('n')} items, now {b.get('n')})"
            if a.get("method") != b.get("method"):
                return (f"dataset fingerprinted differently ({a.get('method')}, now {b.get('method')}), "
                        "cannot tell it is the same data")
            return f"made from different data (same number of items, {b.get('n')}, different content)"
        if isinstance(a, dict) and isinstance(b, dict):
            return describe_difference(a, b, _prefix=f"{_prefix}{key}.")
        if a is None:
            return f"its record has no {_prefix}{key} (written by an older version)"
        return f"made with a different {_prefix}{key} ({_short(a)}, now {_short(b)})"
    return "its record differs"


@dataclass(frozen=True)
class EntryCheck:
    """Outcome of :func:`check_entry`: ``valid`` to reuse; otherwise ``reason`` (None: the file is absent)."""

    valid: bool
    reason: Optional[str] = None


def check_record(path: str | os.PathLike, made_from: Mapping[str, Any]) -> EntryCheck:
    """:func:`check_entry` without reading the file's bytes: only its record says it was made from
    ``made_from`` (for a caller that reads the file with :func:`load_entry`, which checks its hash)."""
    path = Path(path)
    if not path.is_file():
        return EntryCheck(False, None)
    try:
        rec = read_record(path)
    except CacheCorruptError:
        return EntryCheck(False, f"its provenance record {record_path(path).name} is corrupt or unreadable")
    if rec is None:
        return EntryCheck(False, "it has no provenance record (written by an older version or another tool)")
    if rec.get("format") != RECORD_FORMAT:
        return EntryCheck(False, f"its record has format {rec.get('format')!r}, not {RECORD_FORMAT}")
    want = _normalise(made_from)
    if rec["made_from"] != want:
        return EntryCheck(False, describe_difference(rec["made_from"], want))
    return EntryCheck(True, None)


#: the reason of an entry whose bytes do not match its record
MODIFIED = "the file is corrupt or was modified after it was written"


def check_entry(path: str | os.PathLike, made_from: Mapping[str, Any]) -> EntryCheck:
    """Can cache file ``path`` be reused for an entry made from ``made_from``? (see the module doc)"""
    path = Path(path)
    check = check_record(path, made_from)
    if not check.valid:
        return check
    rec = read_record(path)
    size = path.stat().st_size
    if size != rec.get("bytes") or file_sha256(path) != rec["sha256"]:
        return EntryCheck(False, f"{MODIFIED} ({size} bytes, "
                                 f"recorded {rec.get('bytes')}; content hash differs from its record)")
    return EntryCheck(True, None)


def stale_note(what: str, path: str | os.PathLike, reason: str, action: str = "recomputing") -> str:
    """The one log line for an entry that is not reused: ``note: {what} {path}: {reason}: {action}``."""
    return f"note: {what} {path}: {reason}: {action}"


# -- readers with clear errors ----------------------------------------------------------------------
def load_npy(path: str | os.PathLike, *, hint: str = "", verify: bool = True) -> np.ndarray:
    """Load a cache file, failing with a message that names the path and the fix.

    Missing: :class:`CacheMissingError` (with ``hint``, how to make it). Unreadable (empty, truncated,
    garbage header) or, when it has a record and ``verify``, different from its recorded sha256:
    :class:`CacheCorruptError` telling to delete it and recompute it."""
    path = Path(path)
    if not path.is_file():
        msg = f"missing cache file: {path}"
        if hint:
            msg += f" ({hint})"
        raise CacheMissingError(msg)
    fix = f"delete it and recompute it{f' ({hint})' if hint else ''}"
    if verify:
        rec = read_record(path)
        if rec is not None and file_sha256(path) != rec["sha256"]:
            raise CacheCorruptError(f"cache file {path} is corrupt or was modified after it was written (its "
                                    f"content differs from its record {record_path(path).name}); {fix}")
    try:
        return np.load(path, allow_pickle=False)
    except _LOAD_ERRORS as exc:
        raise CacheCorruptError(f"cache file {path} is corrupt ({type(exc).__name__}: {exc}); {fix}") from None


def load_entry(path: str | os.PathLike) -> tuple:
    """``(array, record)`` of cache entry ``path``, consistent without holding :func:`entry_lock`.

    The file's bytes are read once and their sha256 must equal the record's, so the pair always
    belongs together even while another run replaces the entry (data first, then record); when it
    does not (a write in between, or corruption) :class:`CacheCorruptError` is raised: retry, or
    read under the lock. A missing file or record: :class:`CacheMissingError`."""
    path = Path(path)
    rec = read_record(path)
    if rec is None or not path.is_file():
        raise CacheMissingError(f"missing cache entry (file or record): {path}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        raise CacheCorruptError(f"cache file {path} does not match its record {record_path(path).name} (being "
                                "rewritten by another run, or corrupt); retry, or read it under entry_lock")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False), rec
    except _LOAD_ERRORS as exc:
        raise CacheCorruptError(f"cache file {path} is corrupt ({type(exc).__name__}: {exc})") from None


def cached_array(path: str | os.PathLike, made_from: Mapping[str, Any], compute: Callable[[], np.ndarray], *,
                 what: str = "cache entry", log: Callable[[str], None] = print) -> np.ndarray:
    """The array of entry ``path`` when :func:`check_entry` finds it made from ``made_from``; else
    ``compute()``, saved with its record (:func:`save_entry`). Check, compute and save run under
    :func:`entry_lock`, so two runs sharing the directory compute the entry once; an entry that is
    not reused gets one ``log`` line saying why (:func:`stale_note`)."""
    path = Path(path)
    with entry_lock(path):
        check = check_entry(path, made_from)
        if check.valid:                        # the check hashed the file; under the lock it cannot change
            return load_npy(path, verify=False)
        if check.reason:
            log(stale_note(what, path, check.reason))
        array = np.asarray(compute())
        save_entry(path, array, made_from)
        return array


def load_json(path: str | os.PathLike, *, hint: str = "") -> Any:
    """:func:`load_npy` for a JSON cache file."""
    path = Path(path)
    if not path.is_file():
        raise CacheMissingError(f"missing cache file: {path}" + (f" ({hint})" if hint else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise CacheCorruptError(f"cache file {path} is corrupt ({type(exc).__name__}: {exc}); delete it and "
                                f"recompute it{f' ({hint})' if hint else ''}") from None


@dataclass(frozen=True)
class CacheLayout:
    """Paths of every cache file under one root directory (see the module docstring)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    # -- paths ---------------------------------------------------------------------------------
    def labels(self, dataset: str) -> Path:
        return self.root / "labels" / f"{dataset}.npy"

    def features(self, dataset: str, model: str) -> Path:
        return self.root / "features" / dataset / f"{model}.npy"

    def source_probs(self, dataset: str, model: str) -> Path:
        return self.root / "source_probs" / dataset / f"{model}.npy"

    def label_embedding(self, dataset: str, encoder: str) -> Path:
        return self.root / "label_embeddings" / dataset / f"{encoder}.npy"

    def caption_embedding(self, dataset: str, encoder: str) -> Path:
        return self.root / "caption_embeddings" / dataset / f"{encoder}.npy"

    def captions(self, dataset: str) -> Path:
        return self.root / "captions" / f"{dataset}.json"

    # -- loaders with clear errors --------------------------------------------------------------
    def load_labels(self, dataset: str) -> np.ndarray:
        return load_npy(self.labels(dataset), hint="run a forward_feature_*.py script for this dataset")

    def load_features(self, dataset: str, model: str) -> np.ndarray:
        return load_npy(self.features(dataset, model), hint=f"extract features of model {model!r}")

    def load_source_probs(self, dataset: str, model: str) -> np.ndarray:
        return load_npy(self.source_probs(dataset, model),
                        hint=f"model {model!r} has no source head or its probabilities were not extracted")

    def load_label_embedding(self, dataset: str, encoder: str) -> np.ndarray:
        return load_npy(self.label_embedding(dataset, encoder),
                        hint=f"run Label_embedding/ with encoder {encoder!r}")

    def load_caption_embedding(self, dataset: str, encoder: str) -> np.ndarray:
        return load_npy(self.caption_embedding(dataset, encoder),
                        hint=f"run Label_embedding/*_sentence.py with encoder {encoder!r}")
