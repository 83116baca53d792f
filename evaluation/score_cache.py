"""Resumable store of computed transferability scores: one JSON file per dataset.

``{results_dir}/scores/{dataset}.json``::

    {"dataset": "cars",
     "entries": {"<key>": {"model": "resnet50", "metric": "emms", "encoders": ["clip", "bert"],
                           "score": -0.61, "seconds": 1.7, "fingerprint": "<input files' size:mtime>"}}}

The key is ``model/metric`` plus, for metrics that read label embeddings, the label source, the
encoders (in stacking order) and the stacking method — changing any of them is a different score. An
entry is reused only while its ``fingerprint`` (size and mtime of every input file) still matches, so
re-extracting a cache invalidates exactly the scores computed from it. Every :meth:`ScoreCache.put`
rewrites the file atomically (``data.cache.atomic_save_json``): a killed run loses at most the score
being computed. Non-finite scores are stored as ``null`` and read back as NaN.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from data.cache import atomic_save_json

__all__ = ["ScoreEntry", "ScoreCache", "score_key"]


def score_key(model: str, metric: str, *, label_setup: Optional[str] = None) -> str:
    """Cache key of one score; ``label_setup`` (e.g. ``"class_names:clip+bert:project"``) only for
    metrics that read label embeddings."""
    return f"{model}/{metric}" if label_setup is None else f"{model}/{metric}/{label_setup}"


@dataclass(frozen=True)
class ScoreEntry:
    model: str
    metric: str
    encoders: Tuple[str, ...]
    score: float
    seconds: float
    fingerprint: str

    def to_json(self) -> dict:
        d = asdict(self)
        d["encoders"] = list(self.encoders)
        d["score"] = self.score if math.isfinite(self.score) else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ScoreEntry":
        score = d["score"]
        return cls(model=d["model"], metric=d["metric"], encoders=tuple(d.get("encoders", ())),
                   score=float("nan") if score is None else float(score), seconds=float(d["seconds"]),
                   fingerprint=str(d["fingerprint"]))


class ScoreCache:
    """Scores of one dataset, persisted to ``{results_dir}/scores/{dataset}.json``."""

    def __init__(self, results_dir: str | os.PathLike, dataset: str):
        self.dataset = dataset
        self.path = Path(results_dir) / "scores" / f"{dataset}.json"
        self._entries: Dict[str, ScoreEntry] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                try:
                    doc = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"score cache {self.path} is corrupt ({exc}); delete it to recompute") from None
            if doc.get("dataset") != dataset:
                raise ValueError(f"score cache {self.path} belongs to dataset {doc.get('dataset')!r}, not {dataset!r}")
            self._entries = {k: ScoreEntry.from_json(v) for k, v in doc["entries"].items()}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, fingerprint: str) -> Optional[ScoreEntry]:
        """The stored entry under ``key`` if its inputs are unchanged, else None."""
        entry = self._entries.get(key)
        if entry is None or entry.fingerprint != fingerprint:
            return None
        return entry

    def put(self, key: str, entry: ScoreEntry) -> None:
        """Store ``entry`` and rewrite the file atomically."""
        self._entries[key] = entry
        atomic_save_json(self.path, {"dataset": self.dataset,
                                     "entries": {k: e.to_json() for k, e in self._entries.items()}})

    def keys(self) -> Sequence[str]:
        return list(self._entries)
