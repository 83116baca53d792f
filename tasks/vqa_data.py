"""VQA datasets: items ``(image, question)`` with ``targets`` = answer ids into ``classes`` (the
answer vocabulary).

:class:`VQASamples` holds the unique images (uint8 arrays or file paths) once and, per sample,
``image_index`` (row into ``images``), ``questions``, ``targets``; ``fingerprint`` identifies the
images, questions and answers in order (``image_fingerprint``: the unique images only).

``easyvqa_vqa`` (offline, PyPI ``easy-vqa`` 1.0, the published easy-VQA set of 64x64 scenes with
one coloured shape each): a seeded subset. Recipe: from the split's scenes draw ``n_images``
(train 400, test 200) without replacement with ``numpy.random.default_rng([random_state, split])``
(split 0 = train, 1 = test), keep their questions, draw ``n_questions`` of those (train 2000, test
1000), kept in (image id, question) order. Answers: the package's 13-answer vocabulary, in its order.

Full scale (``{data root}/{subdir}``, kind ``vqa``): ``vqav2`` (VQA v2 questions + annotations
JSON, COCO 2014 images), ``cocoqa`` (COCO-QA text files), ``clevr`` (CLEVR v1.0 question JSON);
the answer vocabulary is the most frequent answers of the split (``n_answers``), the image
fingerprint covers the image paths (not their bytes).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from data.fingerprint import sha256_json

__all__ = ["VQASamples", "easyvqa_answers", "build_easyvqa", "build_vqav2", "build_cocoqa", "build_clevr",
           "full_scale_specs"]

_EASYVQA_DEFAULTS = {"train": (400, 2000), "test": (200, 1000)}


class VQASamples(Dataset):
    def __init__(self, images: Sequence, image_index, questions: Sequence[str], targets, classes: Sequence[str], *,
                 image_fingerprint: str, name: str = "", split: str = ""):
        self.images = images
        self.image_index = np.asarray(image_index, dtype=np.int64).copy()
        self.questions: List[str] = [str(q) for q in questions]
        self.targets = np.asarray(targets, dtype=np.int64).copy()
        self.classes = [str(c) for c in classes]
        n = len(self.questions)
        if not (self.image_index.shape == (n,) and self.targets.shape == (n,)) or n == 0:
            raise ValueError(f"VQA samples: {n} questions, image_index {self.image_index.shape}, "
                             f"targets {self.targets.shape} (need the same non-zero N)")
        if self.image_index.min() < 0 or self.image_index.max() >= len(images):
            raise ValueError(f"VQA samples: image_index outside [0, {len(images)})")
        if self.targets.min() < 0 or self.targets.max() >= len(self.classes):
            raise ValueError(f"VQA samples: answer ids outside [0, {len(self.classes)})")
        self.image_fingerprint = image_fingerprint
        self.fingerprint = sha256_json([image_fingerprint, self.image_index.tolist(), self.questions,
                                        [self.classes[t] for t in self.targets]])
        self.name, self.split = name, split

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int):
        from .images import as_pil
        return as_pil(self.images[self.image_index[i]]), self.questions[i]

    @property
    def answers(self) -> List[str]:
        return [self.classes[t] for t in self.targets]


def easyvqa_answers() -> List[str]:
    import easy_vqa
    return list(easy_vqa.get_answers())


def build_easyvqa(root, split: str, transform=None, n_images: Optional[int] = None,
                  n_questions: Optional[int] = None, random_state: int = 0) -> VQASamples:
    """The seeded easy-VQA subset of the module docstring (``transform`` must be None)."""
    import hashlib

    import easy_vqa
    from data.offline import _easyvqa_split       # the easy-VQA scenes, already decoded and cached

    if transform is not None:
        raise ValueError("easyvqa_vqa yields PIL images; preprocessing belongs to the candidate models")
    d_img, d_q = _EASYVQA_DEFAULTS[split]
    n_images, n_questions = int(n_images or d_img), int(n_questions or d_q)
    ids, images, _ = _easyvqa_split(split)
    texts, answers, image_ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    if not 1 <= n_images <= len(ids):
        raise ValueError(f"easyvqa_vqa {split}: n_images must be in [1, {len(ids)}], got {n_images}")
    rng = np.random.default_rng([int(random_state), 0 if split == "train" else 1])
    chosen = np.sort(rng.choice(len(ids), size=n_images, replace=False))
    row_of = {int(ids[r]): k for k, r in enumerate(chosen)}
    pool = sorted((int(i), t, a) for t, a, i in zip(texts, answers, image_ids) if int(i) in row_of)
    if not 1 <= n_questions <= len(pool):
        raise ValueError(f"easyvqa_vqa {split}: n_questions must be in [1, {len(pool)}] for {n_images} images, "
                         f"got {n_questions}")
    picked = [pool[j] for j in np.sort(rng.choice(len(pool), size=n_questions, replace=False))]
    vocab = easyvqa_answers()
    sub = images[chosen]
    return VQASamples(sub, [row_of[i] for i, _, _ in picked], [t for _, t, _ in picked],
                      [vocab.index(a) for _, _, a in picked], vocab,
                      image_fingerprint=hashlib.sha256(np.ascontiguousarray(sub).tobytes()).hexdigest(),
                      name="easyvqa_vqa", split=split)


# -- full-scale loaders (local directories; a missing file raises DatasetNotFoundError naming it) ----------
def _from_triples(paths: Sequence[str], questions: Sequence[str], answers: Sequence[str], *, name: str, split: str,
                  n_answers: Optional[int]) -> VQASamples:
    """Samples over the unique image paths; vocabulary = the ``n_answers`` most frequent answers of
    these samples (ties alphabetical; None: all), samples with other answers dropped."""
    from collections import Counter

    counts = Counter(answers)
    vocab = sorted(counts, key=lambda a: (-counts[a], a))[: None if n_answers is None else int(n_answers)]
    index_of = {a: i for i, a in enumerate(vocab)}
    keep = [i for i, a in enumerate(answers) if a in index_of]
    if not keep:
        raise ValueError(f"{name} {split}: no question left")
    unique = sorted({paths[i] for i in keep})
    row = {p: k for k, p in enumerate(unique)}
    return VQASamples(unique, [row[paths[i]] for i in keep], [questions[i] for i in keep],
                      [index_of[answers[i]] for i in keep], vocab, image_fingerprint=sha256_json(unique),
                      name=name, split=split)


def _need(path, name: str, how: str):
    from pathlib import Path

    from data.registry import DatasetNotFoundError
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"dataset {name!r}: missing {path}. {how}")
    return path


def _read_json(path):
    import json
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


_VQAV2_HOW = "Get VQA v2 (https://visualqa.org: questions + annotations JSON) and the COCO 2014 images."
_COCOQA_HOW = "Get COCO-QA (Ren et al. 2015: {train,test}/questions.txt, answers.txt, img_ids.txt) and COCO 2014 images."
_CLEVR_HOW = "Get CLEVR v1.0 (Johnson et al. 2017: questions/CLEVR_{split}_questions.json, images/{split}/)."


def build_vqav2(folder, split: str, transform=None, n_answers: Optional[int] = 3129, images_dir=None) -> VQASamples:
    """VQA v2: ``v2_OpenEnded_mscoco_{s}2014_questions.json`` + ``v2_mscoco_{s}2014_annotations.json``
    (answer = ``multiple_choice_answer``), images ``{coco}/{s}2014/COCO_{s}2014_{id:012d}.jpg``
    (``images_dir`` default ``{folder}/../coco``); split ``train`` / ``val``."""
    from pathlib import Path
    folder = Path(folder)
    qs = _read_json(_need(folder / f"v2_OpenEnded_mscoco_{split}2014_questions.json", "vqav2", _VQAV2_HOW))["questions"]
    anns = _read_json(_need(folder / f"v2_mscoco_{split}2014_annotations.json", "vqav2", _VQAV2_HOW))["annotations"]
    answer = {int(a["question_id"]): str(a["multiple_choice_answer"]) for a in anns}
    images = _need(Path(images_dir) if images_dir else folder.parent / "coco" / f"{split}2014", "vqav2", _VQAV2_HOW)
    paths = [str(images / f"COCO_{split}2014_{int(q['image_id']):012d}.jpg") for q in qs]
    return _from_triples(paths, [q["question"] for q in qs], [answer[int(q["question_id"])] for q in qs],
                         name="vqav2", split=split, n_answers=n_answers)


def build_cocoqa(folder, split: str, transform=None, n_answers: Optional[int] = None, images_dir=None) -> VQASamples:
    """COCO-QA: ``{split}/questions.txt``, ``answers.txt``, ``img_ids.txt`` (aligned lines); images are
    looked up as ``COCO_train2014_{id:012d}.jpg`` / ``COCO_val2014_...`` under ``{folder}/../coco/{train,val}2014``."""
    from pathlib import Path
    folder = Path(folder)
    read = lambda f: [l.strip() for l in _need(folder / split / f, "cocoqa", _COCOQA_HOW).read_text(encoding="utf-8").splitlines() if l.strip()]
    questions, answers, ids = read("questions.txt"), read("answers.txt"), read("img_ids.txt")
    if not len(questions) == len(answers) == len(ids):
        raise ValueError(f"cocoqa {split}: {len(questions)} questions, {len(answers)} answers, {len(ids)} image ids")
    coco = Path(images_dir) if images_dir else folder.parent / "coco"
    paths = []
    for i in ids:
        candidates = [coco / f"{s}2014" / f"COCO_{s}2014_{int(i):012d}.jpg" for s in ("train", "val")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            _need(candidates[0], "cocoqa", _COCOQA_HOW)
        paths.append(str(found))
    return _from_triples(paths, questions, answers, name="cocoqa", split=split, n_answers=n_answers)


def build_clevr(folder, split: str, transform=None, n_answers: Optional[int] = None) -> VQASamples:
    """CLEVR v1.0: ``questions/CLEVR_{split}_questions.json`` (``image_filename``, ``question``,
    ``answer``), images ``images/{split}/``; split ``train`` / ``val``."""
    from pathlib import Path
    folder = Path(folder)
    qs = _read_json(_need(folder / "questions" / f"CLEVR_{split}_questions.json", "clevr", _CLEVR_HOW))["questions"]
    images = _need(folder / "images" / split, "clevr", _CLEVR_HOW)
    return _from_triples([str(images / q["image_filename"]) for q in qs], [q["question"] for q in qs],
                         [str(q["answer"]) for q in qs], name="clevr", split=split, n_answers=n_answers)


def full_scale_specs() -> tuple:
    from data.registry import DatasetSpec
    return (
        DatasetSpec(name="vqav2", kind="vqa", build=build_vqav2, splits=("train", "val"), subdir="vqav2",
                    description="VQA v2 (COCO 2014 images)", layout="v2_OpenEnded_mscoco_*_questions.json, "
                    "v2_mscoco_*_annotations.json; images in ../coco/{train,val}2014/", how_to_get=_VQAV2_HOW),
        DatasetSpec(name="cocoqa", kind="vqa", build=build_cocoqa, splits=("train", "test"), subdir="cocoqa",
                    description="COCO-QA (COCO 2014 images)", layout="{train,test}/questions.txt, answers.txt, "
                    "img_ids.txt; images in ../coco/{train,val}2014/", how_to_get=_COCOQA_HOW),
        DatasetSpec(name="clevr", kind="vqa", build=build_clevr, splits=("train", "val"), subdir="clevr",
                    description="CLEVR v1.0", layout="questions/CLEVR_*_questions.json, images/{train,val}/",
                    how_to_get=_CLEVR_HOW),
    )
