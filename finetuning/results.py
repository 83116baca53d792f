"""Resumable store of finished (model, dataset) fine-tuning records.

One JSON file, rewritten atomically after every run::

    {"protocol": FinetuneConfig.to_dict(), "runs": {dataset: {model: record}}}

A killed benchmark restarts where it stopped; a file written under another protocol is refused
rather than silently mixed with new results.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from .config import FinetuneConfig

__all__ = ["ResultsStore"]


class ResultsStore:
    """Finished fine-tuning records of one protocol, persisted at ``path``."""

    def __init__(self, path: str | Path, config: FinetuneConfig):
        self.path = Path(path)
        self.config = config
        self._runs: Dict[str, Dict[str, dict]] = {}
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"partial results file {self.path} is not valid JSON ({exc}); "
                                 "delete it to start over") from None
            if not isinstance(doc, dict) or "protocol" not in doc or "runs" not in doc:
                raise ValueError(f"partial results file {self.path} lacks 'protocol'/'runs'; delete it to start over")
            if doc["protocol"] != config.to_dict():
                raise ValueError(f"partial results file {self.path} was measured under another protocol "
                                 f"({doc['protocol']}); delete it (or run with --restart) to use {config.to_dict()}")
            self._runs = doc["runs"]

    def __len__(self) -> int:
        return sum(len(row) for row in self._runs.values())

    def has(self, model: str, dataset: str) -> bool:
        return model in self._runs.get(dataset, {})

    def get(self, model: str, dataset: str) -> dict:
        """The record of ``model`` on ``dataset`` (a ``KeyError`` naming the pair if not run yet)."""
        if not self.has(model, dataset):
            raise KeyError(f"no finished fine-tuning run of {model!r} on {dataset!r} in {self.path}")
        return self._runs[dataset][model]

    def put(self, record: dict) -> None:
        """Add a finished record (keys ``model`` and ``dataset`` required) and save atomically."""
        from data.cache import atomic_save_json

        try:
            model, dataset = record["model"], record["dataset"]
        except KeyError as exc:
            raise ValueError(f"record lacks key {exc}") from None
        self._runs.setdefault(dataset, {})[model] = record
        atomic_save_json(self.path, {"protocol": self.config.to_dict(), "runs": self._runs})
