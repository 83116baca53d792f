"""Resumable store of finished fine-tuning work: whole (model, dataset) records and single trials.

One JSON file, rewritten atomically after every finished training run::

    {"protocol": FinetuneConfig.to_dict(),
     "runs":   {dataset: {model: record}},                 # finished (model, dataset) pairs
     "trials": {dataset: {model: {"lr=<lr>,seed=<s>": trial}}}}   # finished single runs

A killed benchmark restarts where it stopped, down to the last finished training run of a pair
(one (lr, seed) trial); a file written under another protocol is refused rather than silently
mixed with new results. Every write happens under :func:`data.cache.entry_lock` and merges the
file's current content first, so two processes filling different pairs of one file keep both.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from .config import FinetuneConfig

__all__ = ["ResultsStore", "trial_key", "read_results", "read_finished", "markdown_table"]


def trial_key(lr: float, seed: int) -> str:
    """Key of one training run in the store: ``"lr=<repr>,seed=<int>"`` (exact float repr)."""
    return f"lr={float(lr)!r},seed={int(seed)}"


class ResultsStore:
    """Finished fine-tuning records and trials of one protocol, persisted at ``path``."""

    def __init__(self, path: str | Path, config: FinetuneConfig):
        self.path = Path(path)
        self.config = config
        self._runs: Dict[str, Dict[str, dict]] = {}
        self._trials: Dict[str, Dict[str, Dict[str, dict]]] = {}
        self._merge(self._read())
        if not self.path.is_file():
            self._save()                       # the file names its protocol from the start

    def _read(self) -> Optional[dict]:
        if not self.path.is_file():
            return None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"partial results file {self.path} is not valid JSON ({exc}); "
                             "delete it to start over") from None
        if not isinstance(doc, dict) or "protocol" not in doc or "runs" not in doc:
            raise ValueError(f"partial results file {self.path} lacks 'protocol'/'runs'; delete it to start over")
        if FinetuneConfig.from_dict(doc["protocol"]) != self.config:
            raise ValueError(f"partial results file {self.path} was measured under another protocol "
                             f"({doc['protocol']}); delete it (or run with --restart) to use {self.config.to_dict()}")
        return doc

    def _merge(self, doc: Optional[dict]) -> None:
        if doc is None:
            return
        for dataset, row in doc["runs"].items():
            self._runs.setdefault(dataset, {}).update(row)
        for dataset, row in doc.get("trials", {}).items():
            for model, trials in row.items():
                self._trials.setdefault(dataset, {}).setdefault(model, {}).update(trials)

    def _save(self) -> None:
        from data.cache import atomic_save_json, entry_lock

        with entry_lock(self.path):
            self._merge(self._read())          # keep what another process wrote meanwhile
            atomic_save_json(self.path, {"protocol": self.config.to_dict(), "runs": self._runs,
                                         "trials": self._trials})

    def document(self) -> dict:
        """``{"protocol", "runs", "trials"}`` as read and merged so far (a copy: the caller may keep it)."""
        return json.loads(json.dumps({"protocol": self.config.to_dict(), "runs": self._runs, "trials": self._trials}))

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
        try:
            model, dataset = record["model"], record["dataset"]
        except KeyError as exc:
            raise ValueError(f"record lacks key {exc}") from None
        self._runs.setdefault(dataset, {})[model] = record
        self._save()

    def get_trial(self, model: str, dataset: str, lr: float, seed: int) -> Optional[dict]:
        """The finished (lr, seed) training run of ``model`` on ``dataset``, or ``None``."""
        return self._trials.get(dataset, {}).get(model, {}).get(trial_key(lr, seed))

    def trials(self, model: str, dataset: str) -> Dict[str, dict]:
        """Every finished training run of ``model`` on ``dataset``: ``{trial_key: trial}`` (a copy)."""
        return dict(self._trials.get(dataset, {}).get(model, {}))

    def put_trial(self, model: str, dataset: str, lr: float, seed: int, trial: dict) -> None:
        """Keep one finished training run (saved atomically at once)."""
        self._trials.setdefault(dataset, {}).setdefault(model, {})[trial_key(lr, seed)] = trial
        self._save()


def read_results(path: str | Path) -> tuple:
    """``(config, {dataset: {model: test_acc}})`` of a partial-results file or a finished table
    (its ``protocol`` and its finished runs' ``test_acc``), for comparing against a table that is
    still being filled."""
    return read_finished(path)[:2]


def _read_document(path: str | Path) -> dict:
    """The JSON of a partial-results file or a finished table; a clear error when it is neither."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fine-tuning results not found: {path} (run finetune.py)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "protocol" not in doc or "runs" not in doc:
        raise ValueError(f"{path} is neither a partial-results file nor a fine-tuning table ('protocol', 'runs')")
    return doc


def read_finished(path: str | Path) -> tuple:
    """:func:`read_results` plus ``{dataset: {model: [test accuracy of each seed]}}`` of the same
    finished cells (their ``test_acc_seeds``; a cell without them is left out), read at once."""
    doc = _read_document(path)
    table = {d: {m: float(r["test_acc"]) for m, r in row.items()} for d, row in doc["runs"].items()}
    seeds = {d: {m: [float(v) for v in r["test_acc_seeds"]] for m, r in row.items() if r.get("test_acc_seeds")}
             for d, row in doc["runs"].items()}
    return FinetuneConfig.from_dict(doc["protocol"]), table, {d: row for d, row in seeds.items() if row}


def markdown_table(path: str | Path, *, models=None, datasets=None, digits: int = 1) -> str:
    """A markdown table of a fine-tuning table or partial-results file: one row per model, one
    column per dataset, each cell ``mean ± std`` of the seeds' test accuracies (percent) at the
    chosen learning rate and that rate in parentheses; "—" where the cell is not finished (or is
    excluded). ``models`` / ``datasets``: order and subset (default: as first seen in the file)."""
    path = Path(path)
    runs = _read_document(path)["runs"]
    datasets = list(runs) if datasets is None else list(datasets)
    unknown = [d for d in datasets if d not in runs]
    if unknown:
        raise ValueError(f"{path.name} has no finished cell on {', '.join(unknown)} (have: {', '.join(runs)})")
    if models is None:
        models = list(dict.fromkeys(m for d in datasets for m in runs[d]))

    def cell(rec: Optional[dict]) -> str:
        if rec is None:
            return "—"
        std = rec.get("test_acc_std")
        value = f"{rec['test_acc']:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
        return value + (f" ({rec['best_lr']:g})" if rec.get("best_lr") is not None else "")

    lines = ["| model | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    lines += [f"| {m} | " + " | ".join(cell(runs[d].get(m)) for d in datasets) + " |" for m in models]
    return "\n".join(lines)
