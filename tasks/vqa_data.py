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
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from data.fingerprint import sha256_json

__all__ = ["VQASamples", "easyvqa_answers", "build_easyvqa"]

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
