"""User-supplied image data for ``select_models.py``: a class-per-folder tree or a CSV of paths.

Two layouts are accepted:

* a folder with one sub-folder per class (torchvision ``ImageFolder`` layout)::

      my_data/cat/001.jpg, my_data/cat/002.png, my_data/dog/xyz.jpg, ...

  class names are the sub-folder names; files and folders whose name starts with ``.`` are ignored;
* a CSV file with a header containing ``path`` and ``label`` columns (header names are matched
  ignoring case and blanks; paths relative to the CSV's folder or absolute); ``label`` holds class
  names (or integer ids), stripped of surrounding blanks. The file is read as UTF-8 (a BOM is
  accepted); other encodings must be named (``encoding="latin-1"``), they are never guessed. A row
  without a label, an empty label or path, an image listed twice and missing files are errors that
  name the CSV line.

Class ids are assigned in sorted order of the class names and the samples are ordered by class id,
then relative path, so the result does not depend on the file-system listing or the CSV row order. The text encoders see ``classnames``: underscores become spaces
and blanks are squeezed (as ``Label_embedding.readable_classname``). Two classes whose names become
the same text after that (``a_b`` / ``a b``), or differ only in letter case or Unicode form
(``Cat`` / ``cat``: uncased encoders give them identical embeddings), are rejected with an error
naming them: they would get identical label embeddings, which no metric can tell apart.

Every image is opened and decoded once at load (PIL ``verify`` plus a reduced-size decode, about
1 ms per image): empty, truncated, corrupt and non-image files are skipped with one
:class:`UnreadableImageWarning` listing them (name and reason), or raise ``ValueError`` with
``strict_images=True``. The same read gives each file's size and SHA-256, from which
:attr:`UserImageDataset.fingerprint` identifies exactly the images used (and their labels).
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["UserImageDataset", "UnreadableImageWarning", "load_user_dataset", "readable_classname",
           "IMAGE_EXTENSIONS", "MAX_LISTED"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: error and warning messages list at most this many files / lines, then "and n more"
MAX_LISTED = 10


class UnreadableImageWarning(UserWarning):
    """Images that could not be read were left out of the dataset (the message lists them)."""


def readable_classname(name: str) -> str:
    """``'sea_lion'`` -> ``'sea lion'``: underscores to spaces, blanks squeezed (the text encoders'
    ``Label_embedding.readable_classname``; kept here so that ``data`` does not import ``Label_embedding``)."""
    return re.sub(r"\s+", " ", str(name).replace("_", " ")).strip()


def _name_key(name: str) -> str:
    """What makes two class names the same text to a text encoder: readable form, case, Unicode form."""
    return unicodedata.normalize("NFKC", readable_classname(name)).casefold()


def _listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _check_distinct_names(classes: Sequence[str]) -> None:
    groups: Dict[str, List[str]] = {}
    for c in classes:
        groups.setdefault(_name_key(c), []).append(c)
    clashes = [sorted(g) for g in groups.values() if len(g) > 1]
    if clashes:
        desc = _listing([" / ".join(repr(c) for c in g) + f" (both read as {readable_classname(g[0])!r})"
                         for g in clashes])
        raise ValueError(f"classes {desc} have the same class name for the text encoders (underscores read as "
                         "spaces, case and blanks ignored), so they would get identical label embeddings; "
                         "rename or merge them")


class UserImageDataset:
    """A map-style dataset of ``(image, label)`` pairs over image files on disk.

    ``image`` is an RGB ``PIL.Image`` (or ``transform(image)`` when a transform is given).
    Attributes: ``samples`` (list of (path, label)), ``targets`` (int labels), ``classes`` (names,
    index = class id), ``classnames`` (names made readable for text encoders), ``root`` (the folder,
    or the CSV's folder), ``skipped`` (``(path, reason)`` of unreadable files left out).
    """

    def __init__(self, samples: Sequence[Tuple[str, int]], classes: Sequence[str],
                 transform: Optional[Callable] = None, *, root: str | os.PathLike | None = None,
                 skipped: Sequence[Tuple[str, str]] = (), _digests: Optional[Dict[str, Tuple[int, str]]] = None):
        if len(samples) == 0:
            raise ValueError("the dataset has no images")
        self.samples: List[Tuple[str, int]] = [(str(p), int(y)) for p, y in samples]
        self.classes: List[str] = list(classes)
        bad = sorted({y for _, y in self.samples if not 0 <= y < len(self.classes)})
        if bad:
            raise ValueError(f"labels {bad[:MAX_LISTED]} are not class ids 0..{len(self.classes) - 1}")
        _check_distinct_names(self.classes)
        self.classnames: List[str] = [readable_classname(c) for c in self.classes]
        self.targets = np.array([y for _, y in self.samples], dtype=np.int64)
        self.transform = transform
        self.root = None if root is None else str(root)
        self.skipped: List[Tuple[str, str]] = list(skipped)
        self._digests: Dict[str, Tuple[int, str]] = {} if _digests is None else _digests  # path -> (size, sha256)
        self._fingerprint: Optional[str] = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as exc:  # a file changed since loading: name it
            raise ValueError(f"cannot read image {path}: {exc}") from exc
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def subset(self, indices: Iterable[int]) -> "UserImageDataset":
        """The samples at ``indices`` (same classes, transform and cached content hashes)."""
        idx = [int(i) for i in indices]
        return UserImageDataset([self.samples[i] for i in idx], self.classes, self.transform, root=self.root,
                                skipped=self.skipped, _digests=self._digests)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the class list and the ``(path relative to the samples' common folder,
        size, SHA-256 of the content, class name)`` of every sample in sample order: equal exactly when the same image files, with
        the same bytes and labels, are used in the same order (location and mtimes do not matter).
        :func:`load_user_dataset` puts the samples in a canonical order (class id, then relative
        path), so for a loaded dataset this is the hash of the sorted tuples: CSV row order and
        file-system listing order never change it."""
        if self._fingerprint is None:
            rows = []
            base = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p, _ in self.samples])
            for path, label in self.samples:
                if path not in self._digests:
                    self._digests[path] = _digest(Path(path).read_bytes())
                size, sha = self._digests[path]
                rel = Path(os.path.relpath(os.path.abspath(path), base)).as_posix()
                rows.append((rel, size, sha, self.classes[label]))
            payload = json.dumps({"classes": self.classes, "samples": rows}, ensure_ascii=False)
            self._fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return self._fingerprint


def _digest(data: bytes) -> Tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def _image_problem(data: bytes) -> Optional[str]:
    """Why ``data`` is not a readable image (None when it is): header check plus a reduced decode."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "empty file (0 bytes)"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (64, 64))              # JPEG: decode at reduced scale, still reads every byte
            im.load()
    except UnidentifiedImageError:
        return "not an image in a format PIL reads"
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"not a readable image: {text}"
    return None


def _shown(path: str, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else Path(rel).as_posix()


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _hidden(path: Path, below: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(below).parts)


def _from_folder(root: Path) -> Tuple[List[Tuple[str, int]], List[str]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class sub-folders (expected one sub-folder of images per class)")
    classes, samples = [], []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and _is_image(p) and not _hidden(p, d))
        if not files:
            raise ValueError(f"class folder {d} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        cid = len(classes)
        classes.append(d.name)
        samples.extend((str(p), cid) for p in files)
    return samples, classes


def _read_text(path: Path, encoding: str) -> str:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r} for {path}") from None
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        shown = "UTF-8" if codec == "utf-8" else encoding
        raise ValueError(f"{path} is not valid {shown} text: byte 0x{raw[exc.start]:02x} on line {line} cannot be "
                         f"decoded; save the file as UTF-8 or name its encoding (e.g. encoding='latin-1', "
                         f"select_models.py --csv-encoding latin-1)") from None


def _class_order(label: str):
    return (not label.isdigit(), int(label) if label.isdigit() else 0, label)


def _from_csv(csv_path: Path, encoding: str) -> Tuple[List[Tuple[str, int]], List[str]]:
    reader = csv.reader(io.StringIO(_read_text(csv_path, encoding), newline=""))
    header = next(reader, None)
    names = [h.strip().lower() for h in header] if header else []
    if "path" not in names or "label" not in names:
        raise ValueError(f"{csv_path} must have a header with 'path' and 'label' columns, got {header}")
    ip, il = names.index("path"), names.index("label")
    base = csv_path.parent
    rows: List[Tuple[int, Path, str]] = []
    problems: List[str] = []
    seen: Dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue                                               # a blank row
        raw_path = fields[ip] if ip < len(fields) else ""
        if il >= len(fields):
            problems.append(f"line {line}: no label (the row has {len(fields)} field(s))")
            continue
        label = fields[il].strip()
        p = raw_path if raw_path and (Path(raw_path).is_absolute() or (base / raw_path).exists()) else raw_path.strip()
        if not p:
            problems.append(f"line {line}: empty path")
            continue
        if not label:
            problems.append(f"line {line}: empty label for {p}")
            continue
        path = Path(p) if os.path.isabs(p) else base / p
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            problems.append(f"line {line}: {p} is listed again (first on line {seen[key]})")
            continue
        seen[key] = line
        rows.append((line, path, label))
    if problems:
        raise ValueError(f"{csv_path}: {_listing(problems)}")
    if not rows:
        raise ValueError(f"{csv_path} lists no images")
    missing = [f"line {line}: {path}" for line, path, _ in rows if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) listed in {csv_path} do not exist: {_listing(missing)}")
    classes = sorted({lab for _, _, lab in rows}, key=_class_order)
    index = {c: i for i, c in enumerate(classes)}
    return [(str(path), index[lab]) for _, path, lab in rows], classes


def _check_images(samples, classes, progress: bool):
    """Read every file once: keep the readable ones with their (size, sha256), list the others."""
    from tqdm.auto import tqdm

    kept, skipped, digests = [], [], {}
    for path, label in tqdm(samples, desc="checking images", unit="img", disable=not progress, leave=False):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            skipped.append((path, f"cannot read: {exc.strerror or exc}"))
            continue
        problem = _image_problem(data)
        if problem is None:
            kept.append((path, label))
            digests[path] = _digest(data)
        else:
            skipped.append((path, problem))
    return kept, skipped, digests


def load_user_dataset(source: str | os.PathLike, transform: Optional[Callable] = None, *,
                      encoding: str = "utf-8", strict_images: bool = False,
                      progress: bool = False) -> UserImageDataset:
    """Load a class-per-folder tree or a ``path,label`` CSV (see the module docstring).

    ``encoding``: of the CSV (UTF-8 with or without BOM by default). Unreadable images are left out
    with an :class:`UnreadableImageWarning`, or ``ValueError`` when ``strict_images``. Every class
    must keep at least one image and there must be at least 2 classes (``ValueError`` otherwise).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such image folder or CSV file: {source}")
    samples, classes = _from_csv(source, encoding) if source.is_file() else _from_folder(source)
    if len(classes) < 2:
        raise ValueError(f"{source} has a single class ({classes[0]!r}); model selection needs at least 2")
    _check_distinct_names(classes)
    kept, skipped, digests = _check_images(samples, classes, progress)
    root = source.parent if source.is_file() else source
    kept.sort(key=lambda s: (s[1], _shown(s[0], root)))           # canonical order: class id, then path
    if skipped:
        listed = _listing([f"{_shown(p, root)} ({why})" for p, why in skipped])
        if strict_images:
            raise ValueError(f"{len(skipped)} unreadable image(s) in {source}: {listed}")
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) of {len(samples)} in {source}: {listed}",
                      UnreadableImageWarning, stacklevel=2)
    left = np.bincount([y for _, y in kept], minlength=len(classes))
    empty = [classes[c] for c in np.flatnonzero(left == 0)]
    if empty:
        raise ValueError(f"class(es) {', '.join(map(repr, empty))} of {source} have no readable images")
    return UserImageDataset(kept, classes, transform=transform, root=root, skipped=skipped, _digests=digests)
