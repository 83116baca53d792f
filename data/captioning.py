"""Image-captioning datasets of EMMS (flickr8k, flickr30k, rsicd, flickr10k_humor/romantic).

Each is a local image folder plus an annotation file; items are ``(image, caption)`` with one item
per image (``caption_index`` picks which reference caption, default the first; ``all_captions``
keeps them all). Accepted formats:

* **Karpathy-split JSON** (flickr8k ``dataset_flickr8k.json``, flickr30k ``dataset_flickr30k.json``)
  and the **RSICD JSON** (``dataset_rsicd.json``, same schema)::

      {"images": [{"filename": "1000268201_693b08cb0e.jpg", "split": "train",
                   "sentences": [{"raw": "A child in a pink dress ...", "tokens": [...]}, ...]}, ...]}

  ``split`` values ``train``/``restval`` form our ``train``, ``val`` and ``test`` map to themselves.
* **FlickrStyle10k text files** (Gan et al., CVPR 2017): ``humor/funny_train.txt`` and
  ``romantic/romantic_train.txt`` hold one caption per line, aligned line by line with an image list
  (``train_images.txt``: one file name per line; or the release's ``humor/train.p``, a pickled list
  of file names read with a restricted unpickler that only admits lists and strings). Only the
  7000 training captions were released, so the only split is ``train``.

=================== =========================== ========================================================
name                folder under the data root  files
=================== =========================== ========================================================
flickr8k            flickr8k/                   Images/*.jpg, dataset_flickr8k.json
flickr30k           flickr30k/                  flickr30k-images/*.jpg, dataset_flickr30k.json
rsicd               rsicd/                      RSICD_images/*.jpg, dataset_rsicd.json
flickr10k_humor     flickrstyle10k/             images/*.jpg, humor/funny_train.txt, image list
flickr10k_romantic  flickrstyle10k/             images/*.jpg, romantic/romantic_train.txt, image list
=================== =========================== ========================================================

``images_dir=`` / ``annotations=`` (paths relative to the dataset folder, or absolute) override the
defaults.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .base import CaptionDataset
from .registry import DatasetNotFoundError, DatasetSpec, register_dataset

__all__ = ["read_karpathy_json", "read_flickrstyle", "read_image_list"]

_KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


def _resolve(folder: Path, rel: str | Path) -> Path:
    path = Path(rel)
    return path if path.is_absolute() else folder / path


def _must_exist(name: str, path: Path, how_to_get: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"dataset {name!r}: missing {path}. {how_to_get}")
    return path


def read_karpathy_json(path: Path, split: str) -> Tuple[List[str], List[List[str]]]:
    """(file names, caption lists) of the images whose ``split`` belongs to our ``split``."""
    with open(path, encoding="utf-8") as fh:
        payload = json.load(fh)
    if not isinstance(payload, dict) or "images" not in payload:
        raise ValueError(f"{path}: not a Karpathy-split / RSICD JSON (no 'images' list)")
    wanted = _KARPATHY_SPLITS[split]
    names, captions = [], []
    for entry in payload["images"]:
        if entry.get("split") not in wanted:
            continue
        sentences = [s["raw"].strip() for s in entry.get("sentences", [])]
        if not sentences:
            raise ValueError(f"{path}: image {entry.get('filename')!r} has no sentences")
        names.append(entry["filename"])
        captions.append(sentences)
    if not names:
        raise ValueError(f"{path}: no image with split in {wanted}")
    return names, captions


class _ListUnpickler(pickle.Unpickler):
    """Refuses every global: only plain containers, numbers and strings can be rebuilt."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an image-list pickle")


def read_image_list(path: Path) -> List[str]:
    """Image file names from a text file (one per line) or a pickled list (FlickrStyle10k ``train.p``)."""
    path = Path(path)
    if path.suffix == ".p" or path.suffix == ".pkl":
        obj = _ListUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        if not isinstance(obj, (list, tuple)) or not all(isinstance(x, (str, bytes)) for x in obj):
            raise ValueError(f"{path}: expected a pickled list of file names, got {type(obj).__name__}")
        return [x.decode() if isinstance(x, bytes) else x for x in obj]
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_flickrstyle(captions_file: Path, image_list: Path, encoding: str = "utf-8") -> Tuple[List[str], List[List[str]]]:
    """Captions (one per line) aligned with an image list of the same length."""
    try:
        lines = [line.strip() for line in Path(captions_file).read_text(encoding=encoding).splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{captions_file} is not valid {encoding}; pass encoding='latin-1' if the file uses it") from exc
    names = read_image_list(image_list)
    if len(names) != len(lines):
        raise ValueError(f"{captions_file} has {len(lines)} captions but {image_list} lists {len(names)} images")
    return names, [[c] for c in lines]


@dataclass(frozen=True)
class _Caption:
    subdir: str
    images_dir: str
    annotations: str
    reader: Callable
    splits: Tuple[str, ...]
    how_to_get: str
    description: str


def _karpathy(folder, annotations, split):
    return read_karpathy_json(annotations, split)


def _style(folder, annotations, split, image_list: Optional[str] = None, encoding: str = "utf-8"):
    if image_list is None:
        candidates = [folder / "train_images.txt", folder / "humor" / "train.p"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise DatasetNotFoundError(f"missing image list: none of {', '.join(map(str, candidates))} exists")
        image_list = found[0]
    return read_flickrstyle(annotations, _resolve(folder, image_list), encoding=encoding)


_KARPATHY_HOW = ("Get the images from the dataset's site and the Karpathy-split JSON from "
                 "https://cs.stanford.edu/people/karpathy/deepimagesent/ (caption_datasets.zip).")
_STYLE_HOW = ("Get FlickrStyle10k (Gan et al. 2017: humor/ and romantic/ caption files) and its Flickr30k "
              "images; put the image file names, aligned with the caption lines, in train_images.txt.")
_CAPTIONS: Dict[str, _Caption] = {
    "flickr8k": _Caption("flickr8k", "Images", "dataset_flickr8k.json", _karpathy, ("train", "val", "test"),
                         _KARPATHY_HOW, "Flickr8k (Karpathy split)"),
    "flickr30k": _Caption("flickr30k", "flickr30k-images", "dataset_flickr30k.json", _karpathy,
                          ("train", "val", "test"), _KARPATHY_HOW, "Flickr30k (Karpathy split)"),
    "rsicd": _Caption("rsicd", "RSICD_images", "dataset_rsicd.json", _karpathy, ("train", "val", "test"),
                      "Get RSICD (Lu et al. 2017, https://github.com/201528014227051/RSICD_optimal): RSICD_images/ "
                      "and dataset_rsicd.json.", "RSICD remote-sensing captions"),
    "flickr10k_humor": _Caption("flickrstyle10k", "images", "humor/funny_train.txt", _style, ("train",),
                                _STYLE_HOW, "FlickrStyle10k humorous captions"),
    "flickr10k_romantic": _Caption("flickrstyle10k", "images", "romantic/romantic_train.txt", _style, ("train",),
                                   _STYLE_HOW, "FlickrStyle10k romantic captions"),
}


def _make_builder(name: str, entry: _Caption):
    def build(folder: Path, split: str, transform=None, images_dir: Optional[str] = None,
              annotations: Optional[str] = None, caption_index: int = 0, **reader_options):
        image_folder = _must_exist(name, _resolve(folder, images_dir or entry.images_dir), entry.how_to_get)
        ann = _must_exist(name, _resolve(folder, annotations or entry.annotations), entry.how_to_get)
        names, captions = entry.reader(folder, ann, split, **reader_options)
        paths = [image_folder / n for n in names]
        return CaptionDataset(paths, captions, caption_index=caption_index, transform=transform, name=name,
                              split=split)
    build.__name__ = f"build_{name}"
    return build


for _name, _entry in _CAPTIONS.items():
    register_dataset(DatasetSpec(
        name=_name, kind="caption", build=_make_builder(_name, _entry), splits=_entry.splits,
        description=_entry.description, subdir=_entry.subdir,
        layout=f"{_entry.images_dir}/*.jpg, {_entry.annotations}", how_to_get=_entry.how_to_get))
