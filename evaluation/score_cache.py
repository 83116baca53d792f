"""Resumable store of computed transferability scores: one JSON file per dataset, safe to share.

``{results_dir}/scores/{dataset}.json``::

    {"dataset": "cars",
     "entries": {"<key>": {"model": "resnet50", "metric": "emms", "encoders": ["clip", "bert"],
                           "score": -0.61, "seconds": 1.7,
                           "inputs": {"features/cars/resnet50.npy": "<sha256 of the file>", ...},
                           "code": "<version of the metric's code>"}}}

The key is ``model/metric`` plus, for metrics that read label embeddings, the label source, the
encoders (in stacking order) and the stacking method — changing any of them is a different score. An
entry is reused only while the sha256 of every input file (``inputs``, content, not size + mtime)
and the metric's code version (``code``, :func:`evaluation.runner.metric_code_version`) are
unchanged; :meth:`ScoreCache.get` otherwise says why. Entries of older versions (a size:mtime
``fingerprint``) are never reused.

Concurrency: :meth:`ScoreCache.put` / :meth:`ScoreCache.put_many` take an exclusive
``fcntl.flock`` on ``scores/.{dataset}.json.lock``, re-read the file, merge the new entries into
what other runs wrote meanwhile and rewrite it atomically (``data.cache.atomic_save_json``): two
runs with different metrics on one results directory lose nothing, and a killed run loses at most
the scores being computed. A corrupt file (truncated JSON) is reported once and its scores are
recomputed. Non-finite scores are stored as ``null`` and read back as NaN.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from data.cache import atomic_save_json, entry_lock

__all__ = ["ScoreEntry", "ScoreCache", "score_key"]


def score_key(model: str, metric: str, *, label_setup: Optional[str] = None) -> str:
    """Cache key of one score; ``label_setup`` (e.g. ``"class_names:clip+bert:project"``) only for
    metrics that read label embeddings."""
    return f"{model}/{metric}" if label_setup is None else f"{model}/{metric}/{label_setup}"


@dataclass(frozen=True)
class ScoreEntry:
    """One stored score and what it was computed from (``inputs``: cache-relative path -> sha256)."""

    model: str
    metric: str
    encoders: Tuple[str, ...]
    score: float
    seconds: float
    inputs: Optional[Mapping[str, str]] = field(default=None)   # None: an entry of an older version
    code: Optional[str] = None

    def to_json(self) -> dict:
        return {"model": self.model, "metric": self.metric, "encoders": list(self.encoders),
                "score": self.score if math.isfinite(self.score) else None, "seconds": self.seconds,
                "inputs": None if self.inputs is None else dict(self.inputs), "code": self.code}

    @classmethod
    def from_json(cls, d: dict) -> "ScoreEntry":
        score = d["score"]
        inputs = d.get("inputs")
        return cls(model=d["model"], metric=d["metric"], encoders=tuple(d.get("encoders", ())),
                   score=float("nan") if score is None else float(score), seconds=float(d["seconds"]),
                   inputs=None if not isinstance(inputs, dict) else {str(k): str(v) for k, v in inputs.items()},
                   code=d.get("code"))

    def mismatch(self, inputs: Mapping[str, str], code: str) -> Optional[str]:
        """Why this entry cannot stand for a score of ``inputs`` / ``code`` now (None: it can)."""
        if self.inputs is None or self.code is None:
            return "stored by an older version without content fingerprints"
        if self.code != code:
            return f"the code of metric {self.metric!r} changed"
        if dict(self.inputs) != dict(inputs):
            changed = sorted(k for k in set(self.inputs) | set(inputs) if self.inputs.get(k) != inputs.get(k))
            return f"input {changed[0]} changed" + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
        return None


class _OtherDataset(Exception):
    pass


class ScoreCache:
    """Scores of one dataset, persisted to ``{results_dir}/scores/{dataset}.json`` (see the module doc)."""

    def __init__(self, results_dir: str | os.PathLike, dataset: str, *, log: Callable[[str], None] = print):
        self.dataset = dataset
        self.path = Path(results_dir) / "scores" / f"{dataset}.json"
        self._log = log
        self._reported_corrupt = False
        self._entries: Dict[str, ScoreEntry] = self._read()

    def _read(self) -> Dict[str, ScoreEntry]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
                raise ValueError("not a score-cache document")
            if doc.get("dataset") != self.dataset:
                raise _OtherDataset(doc.get("dataset"))
            return {k: ScoreEntry.from_json(v) for k, v in doc["entries"].items()}
        except _OtherDataset as exc:
            raise ValueError(f"score cache {self.path} belongs to dataset {exc.args[0]!r}, not {self.dataset!r}; "
                             "use another --results-dir or delete it") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if not self._reported_corrupt:
                self._log(f"note: score cache {self.path} is corrupt ({type(exc).__name__}: {exc}): "
                          "its scores are recomputed and the file rewritten")
                self._reported_corrupt = True
            return {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: str, inputs: Mapping[str, str], code: str) -> Tuple[Optional[ScoreEntry], Optional[str]]:
        """``(entry, None)`` if a stored score under ``key`` was computed from exactly ``inputs`` and
        ``code``; else ``(None, reason)`` (reason None when nothing is stored under ``key``)."""
        entry = self._entries.get(key)
        if entry is None:
            return None, None
        reason = entry.mismatch(inputs, code)
        return (entry, None) if reason is None else (None, reason)

    def get(self, key: str, inputs: Mapping[str, str], code: str) -> Optional[ScoreEntry]:
        """The stored entry under ``key`` if its inputs and code are unchanged, else None."""
        return self.lookup(key, inputs, code)[0]

    def put(self, key: str, entry: ScoreEntry) -> None:
        """Store ``entry`` (read-merge-write under the file lock)."""
        self.put_many({key: entry})

    def put_many(self, entries: Mapping[str, ScoreEntry]) -> None:
        """Store several entries in one locked read-merge-write."""
        if not entries:
            return
        with entry_lock(self.path):
            merged = self._read()
            merged.update(entries)
            atomic_save_json(self.path, {"dataset": self.dataset,
                                         "entries": {k: e.to_json() for k, e in merged.items()}})
            self._entries = merged

    def keys(self) -> Sequence[str]:
        return list(self._entries)
