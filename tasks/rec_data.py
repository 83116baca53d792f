"""REC datasets: items ``(image, expression)``; ``boxes`` (N, 4) pixels x1, y1, x2, y2 of the
referent; ``sizes`` (N, 2) the image width, height; ``targets`` = ``arange(N)`` (no classes).

* ``rec_scenes`` (offline): scenes composed here from real packaged images (``tasks.rec_scenes``;
  not a published benchmark), train 400 / test 200 scenes, at most 2 expressions each. The
  fingerprints of the default splits are recorded in ``data/built/rec_scenes.json``
  (``scripts/build_rec_scenes.py``); a regeneration that disagrees raises ``ValueError``.
* ``refcoco``, ``refcoco+``, ``refcocog`` (full scale, refer-style, Yu et al. 2016 / Mao et al.
  2016): ``{root}/{name}/refs({splitBy}).p`` (a pickled list of refs: ``image_id``, ``ann_id``,
  ``split``, ``sentences`` [{"sent"}]), ``{root}/{name}/instances.json`` (COCO: ``images`` with
  ``file_name``/``width``/``height``, ``annotations`` with ``bbox`` [x, y, w, h]) and the COCO
  train2014 images in ``{root}/coco/train2014/``. One sample per (ref, sentence); splits
  train / val / test (refcoco/+: also testA / testB).
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from data.fingerprint import sha256_json
from data.registry import DatasetNotFoundError, DatasetSpec

__all__ = ["RECSamples", "build_rec_scenes", "read_refer", "REFER_DATASETS", "BUILT_FINGERPRINTS"]

BUILT_FINGERPRINTS = Path(__file__).resolve().parent.parent / "data" / "built" / "rec_scenes.json"
_SCENE_DEFAULTS = {"train": 400, "test": 200}


class RECSamples(Dataset):
    def __init__(self, images: Sequence, image_index, expressions: Sequence[str], boxes, sizes, *,
                 image_fingerprint: str, name: str = "", split: str = ""):
        self.images = images
        self.image_index = np.asarray(image_index, dtype=np.int64).copy()
        self.expressions: List[str] = [str(e) for e in expressions]
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        self.sizes = np.asarray(sizes, dtype=np.float32).reshape(-1, 2).copy()
        n = len(self.expressions)
        if n == 0 or self.image_index.shape != (n,) or self.boxes.shape[0] != n or self.sizes.shape[0] != n:
            raise ValueError(f"REC samples: {n} expressions, image_index {self.image_index.shape}, boxes "
                             f"{self.boxes.shape}, sizes {self.sizes.shape} (need the same non-zero N)")
        if self.image_index.min() < 0 or self.image_index.max() >= len(images):
            raise ValueError(f"REC samples: image_index outside [0, {len(images)})")
        bad = (self.boxes[:, 2] <= self.boxes[:, 0]) | (self.boxes[:, 3] <= self.boxes[:, 1])
        if bad.any():
            raise ValueError(f"REC samples: {int(bad.sum())} empty boxes (x2 <= x1 or y2 <= y1), first at row "
                             f"{int(np.flatnonzero(bad)[0])}")
        self.targets = np.arange(n, dtype=np.int64)
        self.classes: List[str] = []
        self.image_fingerprint = image_fingerprint
        self.fingerprint = sha256_json([image_fingerprint, self.image_index.tolist(), self.expressions,
                                        np.round(self.boxes, 3).tolist(), self.sizes.tolist()])
        self.name, self.split = name, split

    def __len__(self) -> int:
        return len(self.expressions)

    def __getitem__(self, i: int):
        from .images import as_pil
        return as_pil(self.images[self.image_index[i]]), self.expressions[i]

    def normalised_boxes(self) -> np.ndarray:
        """(N, 4) boxes divided by (w, h, w, h) of their image."""
        return self.boxes / np.concatenate([self.sizes, self.sizes], axis=1)


def build_rec_scenes(root, split: str, transform=None, n_scenes: Optional[int] = None, random_state: int = 0,
                     per_scene: int = 2) -> RECSamples:
    """The composed scenes of ``tasks.rec_scenes`` as a :class:`RECSamples` (fingerprint-checked)."""
    from .rec_scenes import CANVAS, build_scenes

    if transform is not None:
        raise ValueError("rec_scenes yields PIL images; preprocessing belongs to the candidate models")
    n = int(n_scenes or _SCENE_DEFAULTS[split])
    s = build_scenes(split, n, random_state=random_state, per_scene=per_scene)
    ds = RECSamples(s.images, s.scene_index, s.expressions, s.boxes, np.full((len(s.expressions), 2), CANVAS),
                    image_fingerprint=hashlib.sha256(s.images.tobytes()).hexdigest(), name="rec_scenes", split=split)
    recorded = _recorded_fingerprint(split, n, random_state, per_scene)
    if recorded is not None and recorded != ds.fingerprint:
        raise ValueError(f"rec_scenes {split}: regenerated scenes have fingerprint {ds.fingerprint[:16]}..., "
                         f"{BUILT_FINGERPRINTS} records {recorded[:16]}... (the packaged source images or the "
                         "recipe changed); re-run scripts/build_rec_scenes.py if the change is intended")
    return ds


def scene_config_key(split: str, n: int, random_state: int, per_scene: int) -> str:
    return f"{split}:n={n}:seed={random_state}:per_scene={per_scene}"


def _recorded_fingerprint(split, n, random_state, per_scene) -> Optional[str]:
    if not BUILT_FINGERPRINTS.is_file():
        return None
    doc = json.loads(BUILT_FINGERPRINTS.read_text(encoding="utf-8"))
    return doc.get("fingerprints", {}).get(scene_config_key(split, n, random_state, per_scene))


# -- RefCOCO / RefCOCO+ / RefCOCOg ---------------------------------------------------------------
REFER_DATASETS = {"refcoco": ("refcoco", "unc", ("train", "val", "testA", "testB")),
                  "refcoco+": ("refcoco+", "unc", ("train", "val", "testA", "testB")),
                  "refcocog": ("refcocog", "umd", ("train", "val", "test"))}
_REFER_HOW = ("Get the refer annotations (refs(*).p, instances.json; https://github.com/lichengunc/refer) "
              "and the COCO train2014 images into {root}/coco/train2014/.")


def _must(path: Path, name: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"dataset {name!r}: missing {path}. {_REFER_HOW}")
    return path


def read_refer(folder: Path, images_dir: Path, split: str, split_by: str, name: str = "refer") -> RECSamples:
    """Samples of one split of a refer-style dataset (module docstring)."""
    from data.captioning import _ListUnpickler      # refuses every global: plain lists / dicts only

    refs_file = _must(folder / f"refs({split_by}).p", name)
    inst_file = _must(folder / "instances.json", name)
    _must(images_dir, name)
    refs = _ListUnpickler(io.BytesIO(refs_file.read_bytes()), encoding="latin1").load()
    if not isinstance(refs, list):
        raise ValueError(f"{refs_file}: expected a pickled list of refs, got {type(refs).__name__}")
    inst = json.loads(inst_file.read_text(encoding="utf-8"))
    images = {int(im["id"]): im for im in inst["images"]}
    anns = {int(a["id"]): a for a in inst["annotations"]}
    paths: List[str] = []
    row_of = {}
    index, exprs, boxes, sizes = [], [], [], []
    for ref in refs:
        if ref.get("split") != split:
            continue
        im = images[int(ref["image_id"])]
        x, y, w, h = (float(v) for v in anns[int(ref["ann_id"])]["bbox"])
        if im["id"] not in row_of:
            row_of[im["id"]] = len(paths)
            paths.append(str(images_dir / im["file_name"]))
        for sent in ref.get("sentences", []):
            index.append(row_of[im["id"]])
            exprs.append(sent["sent"])
            boxes.append((x, y, x + w, y + h))
            sizes.append((float(im["width"]), float(im["height"])))
    if not exprs:
        raise ValueError(f"{refs_file}: no refs with split {split!r}")
    return RECSamples(paths, index, exprs, boxes, sizes, image_fingerprint=sha256_json(paths), name=name, split=split)


def _refer_builder(name: str):
    sub, split_by, _ = REFER_DATASETS[name]

    def build(folder, split, transform=None, images_dir: Optional[str] = None):
        if transform is not None:
            raise ValueError(f"{name} yields PIL images; preprocessing belongs to the candidate models")
        images = Path(images_dir) if images_dir else Path(folder).parent / "coco" / "train2014"
        return read_refer(Path(folder), images, split, split_by, name=name)
    build.__name__ = f"build_{name}"
    return build


def refer_specs() -> tuple:
    return tuple(DatasetSpec(name=n, kind="rec", build=_refer_builder(n), splits=splits,
                             description=f"{n} referring expressions over COCO train2014 (refer-style files)",
                             subdir=sub, required=(f"refs({by}).p", "instances.json"),
                             layout=f"refs({by}).p, instances.json; images in ../coco/train2014/",
                             how_to_get=_REFER_HOW)
                 for n, (sub, by, splits) in REFER_DATASETS.items())
