"""Content fingerprints of datasets, files and callables: what a cache entry was made from.

:func:`dataset_fingerprint` (a sha256 hex string) identifies the items of a dataset in their order,
so two datasets with the same fingerprint yield the same features. What it reads, first match wins:

====================================== ==================================================================
dataset                                fingerprint over
====================================== ==================================================================
has a ``fingerprint`` str attribute    that string (the dataset vouches for its own content, e.g.
                                       ``data.user_dataset``), plus the selected indices for a subset
``torch.utils.data.Subset`` (nested)   the composed indices + the fingerprint of the selected items of
                                       the base dataset (only those files are read)
``samples`` list of ``(path, label)``  per item in order: path relative to the items' common folder,
(ImageFolder, file datasets)           file size, sha256 of the file's bytes, label
``images`` array + ``targets``         the selected image rows' bytes, dtype, shape, and the labels
(in-memory sets, MNIST-like)
``paths`` + ``captions`` (captioning)  as ``samples``, with the caption in place of the label
anything else                          every item decoded and hashed (PIL pixels, tensors, arrays,
                                       strings, numbers): one pass over the data; give the dataset a
                                       ``fingerprint`` attribute to avoid it
====================================== ==================================================================

In every case the class names (``classes``) and a dataset-level ``transform`` (its description,
:func:`describe`) are included. File hashes are memoised per process on (inode, size, mtime, ctime);
ctime cannot be set back by ``os.utime``, so a rewritten file is always hashed again. Hashing reads
about 1 GB/s.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["file_sha256", "sha256_json", "array_sha256", "describe", "dataset_fingerprint", "dataset_record"]

_CHUNK = 1 << 22
_FILE_HASHES: Dict[Tuple, str] = {}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of the bytes of ``path`` (memoised per process while the file is unchanged)."""
    path = os.fspath(path)
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
        digest = h.hexdigest()
        if len(_FILE_HASHES) > 100_000:
            _FILE_HASHES.clear()
        _FILE_HASHES[key] = digest
    return digest


def sha256_json(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def array_sha256(a) -> str:
    """sha256 of the bytes of ``a`` as a C-contiguous numpy array (its dtype and values; not its shape)."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def describe(obj: Any) -> str:
    """A stable text description of a transform / callable / value (no memory addresses).

    Functions and lambdas: ``module.qualname`` plus the sha256 of their source when available;
    ``functools.partial``: the function and its arguments; other objects: their ``repr`` (torchvision
    transforms list their sizes and normalisation) with ``" at 0x..."`` removed.
    """
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return repr(obj)
    if isinstance(obj, functools.partial):
        args = ", ".join([describe(a) for a in obj.args] + [f"{k}={describe(v)}" for k, v in sorted(obj.keywords.items())])
        return f"partial({describe(obj.func)}, {args})"
    if inspect.ismethod(obj):
        return f"{describe(obj.__func__)}@{describe(obj.__self__)}"
    if inspect.isfunction(obj):
        name = f"{obj.__module__}.{obj.__qualname__}"
        try:
            name += "#" + hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
        except (OSError, TypeError):    # no source (e.g. defined in a REPL): the bytecode instead
            name += "#co" + hashlib.sha256(obj.__code__.co_code).hexdigest()[:16]
        # the values a function closes over or defaults to change what it does (a resize size, ...)
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append(describe(cell.cell_contents))
            except ValueError:          # an empty cell
                cells.append("<empty>")
        extra = [describe(d) for d in obj.__defaults__ or ()] + cells
        return name + (f"({', '.join(extra)})" if extra else "")
    return _ADDRESS.sub("", repr(obj))


def _update_item(h, item: Any) -> None:
    """Feed one decoded item into the hash (type-tagged, so ``1`` and ``"1"`` differ)."""
    if isinstance(item, (tuple, list)):
        h.update(f"seq{len(item)}(".encode())
        for x in item:
            _update_item(h, x)
        h.update(b")")
        return
    try:
        from PIL import Image
        if isinstance(item, Image.Image):
            h.update(f"pil:{item.mode}:{item.size}:".encode())
            h.update(item.tobytes())
            return
    except ImportError:  # pragma: no cover - PIL is a dependency
        pass
    if hasattr(item, "detach") and hasattr(item, "cpu"):  # torch tensor
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        arr = np.ascontiguousarray(item)
        h.update(f"nd:{arr.dtype.str}:{arr.shape}:".encode())
        h.update(arr.tobytes())
        return
    if isinstance(item, (str, bytes, int, float, bool, np.generic)) or item is None:
        h.update(f"{type(item).__name__}:{item!r};".encode())
        return
    raise TypeError(f"cannot fingerprint a dataset item of type {type(item).__name__}; give the dataset a "
                    "'fingerprint' string attribute")


def _relative_paths(paths: Sequence[str]) -> list:
    if not paths:
        return []
    absolute = [os.path.abspath(p) for p in paths]
    base = os.path.commonpath(absolute)
    if len(absolute) == 1 or os.path.isfile(base):
        base = os.path.dirname(base)
    return [Path(os.path.relpath(p, base)).as_posix() for p in absolute]


def _files_digest(h, paths: Sequence[str], extra: Sequence[Any]) -> None:
    for rel, p, x in zip(_relative_paths(paths), paths, extra):
        size = os.path.getsize(p)
        h.update(f"file:{rel}:{size}:{file_sha256(p)}:{type(x).__name__}:{x!r};".encode())


def _leaf(ds) -> Tuple[Any, Optional[np.ndarray]]:
    """Unwrap nested Subsets: (base dataset, composed indices or None)."""
    from torch.utils.data import Subset

    indices: Optional[np.ndarray] = None
    while isinstance(ds, Subset) and not isinstance(getattr(ds, "fingerprint", None), str):
        idx = np.asarray(ds.indices, dtype=np.int64).reshape(-1)
        indices = idx if indices is None else idx[indices]
        ds = ds.dataset
    return ds, indices


def _fingerprint_and_method(ds) -> Tuple[str, str]:
    base, indices = _leaf(ds)
    h = hashlib.sha256()
    n = len(base)
    if indices is not None:
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise ValueError(f"subset indices out of range for a dataset of {n} items")
        indices = np.where(indices < 0, indices + n, indices)
        h.update(b"subset:" + indices.astype("<i8").tobytes())
    select = range(n) if indices is None else [int(i) for i in indices]
    own = getattr(base, "fingerprint", None)
    if isinstance(own, str):
        method = "attribute"
        h.update(f"attr:{own};".encode())
    else:
        h.update(f"classes:{json.dumps([str(c) for c in getattr(base, 'classes', []) or []])};".encode())
        h.update(f"transform:{describe(getattr(base, 'transform', None))};".encode())
        samples = getattr(base, "samples", None)
        images = getattr(base, "images", None)
        if samples is not None and len(samples) == n and all(len(s) == 2 for s in samples[:1]):
            method = "files"
            chosen = [samples[i] for i in select]
            _files_digest(h, [str(p) for p, _ in chosen], [y for _, y in chosen])
        elif isinstance(images, np.ndarray) and images.shape[0] == n and hasattr(base, "targets"):
            method = "arrays"
            targets = np.asarray(base.targets)
            rows = np.asarray(list(select), dtype=np.int64)
            h.update(b"images:")
            _update_item(h, np.ascontiguousarray(images[rows]))
            _update_item(h, targets[rows])
        elif hasattr(base, "paths") and hasattr(base, "captions") and len(base.paths) == n:
            method = "files"
            _files_digest(h, [str(base.paths[i]) for i in select], [base.captions[i] for i in select])
        else:
            method = "items"
            for i in select:
                _update_item(h, base[i])
    return h.hexdigest(), method


def dataset_fingerprint(ds) -> str:
    """sha256 hex fingerprint of the items of ``ds`` in their order (see the module docstring)."""
    return _fingerprint_and_method(ds)[0]


def dataset_record(ds) -> Dict[str, Any]:
    """``{"fingerprint", "n", "method"}`` of ``ds``: the dataset part of a cache entry's record."""
    fp, method = _fingerprint_and_method(ds)
    return {"fingerprint": fp, "n": int(len(ds)), "method": method}
