"""Cache plumbing shared by the task modules: labels, per-sample text embeddings, fused features
and the resumable ground-truth store. Every file is a ``data.cache`` entry with a record of what it
was made from; a stale one is recomputed with one note.

Cache keys of a task dataset: ``{dataset}`` for its ``train`` split (what the metrics score), and
``{dataset}.{split}`` for the other splits (read by the ground truth only).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np

from data.cache import (CacheLayout, atomic_save_json, check_entry, entry_lock, load_npy, read_record, save_entry,
                        stale_note)

from .text import LOCAL_TEXT_ENCODERS, get_question_encoder

__all__ = ["cache_key", "write_labels", "text_embeddings", "write_features", "file_record", "GroundTruthStore",
           "split_candidate", "write_ground_truth_file", "encoder_arg", "candidate_inputs", "probe_agreement"]


def cache_key(dataset: str, split: str) -> str:
    return dataset if split == "train" else f"{dataset}.{split}"


def split_candidate(name: str, backbones: Sequence[str], encoders: Sequence[str]) -> tuple:
    """``"backbone+encoder"`` -> (backbone, encoder), each checked against the allowed names."""
    parts = str(name).split("+")
    if len(parts) != 2 or parts[0] not in backbones or parts[1] not in encoders:
        raise ValueError(f"candidate {name!r} must be 'backbone+text_encoder' with a backbone in "
                         f"{sorted(backbones)} and a text encoder in {sorted(encoders)}")
    return parts[0], parts[1]


def _dataset_part(ds) -> dict:
    return {"fingerprint": ds.fingerprint, "n": int(len(ds))}


def write_labels(cache_dir, key: str, ds, labels: np.ndarray, log: Callable[[str], None] = print) -> Path:
    """``labels/{key}.npy`` (N,) int64 with the dataset's fingerprint in its record."""
    path = CacheLayout(cache_dir).labels(key)
    made_from = {"dataset": _dataset_part(ds)}
    with entry_lock(path):
        check = check_entry(path, made_from)
        if not check.valid:
            if check.reason:
                log(stale_note("labels", path, check.reason))
            save_entry(path, np.asarray(labels, dtype=np.int64), made_from)
    return path


def encoder_arg(name: str):
    """What ``Label_embedding.embed`` takes for encoder ``name``: the registry name (built lazily,
    only when a file must be made), or an instance for the encoders local to ``tasks.text``."""
    return get_question_encoder(name) if name in LOCAL_TEXT_ENCODERS else name


def text_embeddings(cache_dir, key: str, texts: Sequence[str], encoder: str, role: str, *,
                    progress: bool = False, log: Callable[[str], None] = print) -> np.ndarray:
    """(N, E) embeddings of per-sample ``texts`` with ``encoder``, cached as
    ``caption_embeddings/{key}/{role}.{encoder}.npy`` (``Label_embedding.write_caption_embeddings``)."""
    from Label_embedding.embed import write_caption_embeddings

    enc = encoder_arg(encoder)
    cache_name = encoder if role == "" else f"{role}.{encoder}"
    path = write_caption_embeddings(key, enc, cache_dir, captions=list(texts), cache_name=cache_name,
                                    progress=progress, log=log)
    return load_npy(path)


def file_record(path: Path) -> dict:
    """``{"file", "sha256"}`` of a cache entry (what a derived entry was made from)."""
    rec = read_record(path)
    return {"file": Path(path).name, "sha256": None if rec is None else rec["sha256"]}


def write_features(cache_dir, key: str, candidate: str, ds, made_from: Mapping, compute: Callable[[], np.ndarray],
                   log: Callable[[str], None] = print) -> tuple:
    """``features/{key}/{candidate}.npy`` = ``compute()`` unless a valid entry made from the same
    ``made_from`` (plus the dataset's fingerprint) exists; returns (path, "extracted" | "skipped")."""
    path = CacheLayout(cache_dir).features(key, candidate)
    full = {"dataset": _dataset_part(ds), **made_from}
    with entry_lock(path):
        check = check_entry(path, full)
        if check.valid:
            return path, "skipped"
        if check.reason:
            log(stale_note("features", path, check.reason))
        x = compute()
        if x.shape[0] != len(ds) or not np.all(np.isfinite(x)):
            raise ValueError(f"{candidate}: fused features of shape {x.shape} for {len(ds)} samples (or non-finite)")
        save_entry(path, x, full)
    return path, "extracted"


class GroundTruthStore:
    """Per-candidate ground-truth runs in one JSON file, written atomically after each run.

    The file holds ``{"protocol": {...}, "runs": {candidate: record}}``; opening it with another
    protocol raises ``ValueError`` naming the file (delete it or use another path)."""

    def __init__(self, path, protocol: Mapping):
        self.path = Path(path)
        self.protocol = json.loads(json.dumps(dict(protocol)))
        self.runs: Dict[str, dict] = {}
        if self.path.is_file():
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("protocol") != self.protocol:
                raise ValueError(f"{self.path} holds runs of another protocol ({doc.get('protocol')}); delete it "
                                 "or pass another partial path")
            self.runs = dict(doc.get("runs", {}))

    def _reload(self) -> None:
        if self.path.is_file():
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("protocol") == self.protocol:
                self.runs = {**doc.get("runs", {}), **self.runs}

    def get(self, candidate: str) -> Optional[dict]:
        """The finished run of ``candidate`` (also one another process stored meanwhile), or None."""
        if candidate not in self.runs:
            self._reload()
        return self.runs.get(candidate)

    def put(self, candidate: str, record: dict) -> None:
        """Add one run; merges with runs another process wrote meanwhile (under a file lock)."""
        with entry_lock(self.path):
            self._reload()
            self.runs[candidate] = record
            atomic_save_json(self.path, {"protocol": self.protocol, "runs": self.runs})


def write_ground_truth_file(path, *, group: str, dataset: str, measure: str, unit: str, runs: Mapping[str, dict],
                            about: str, protocol: Mapping, source: str, extra: Optional[Mapping] = None) -> Path:
    """Write ``{group}.json`` in the schema of ``data.ground_truth`` (table = each run's ``test``);
    ``extra``: further top-level fields (e.g. the agreement with a yardstick)."""
    from data.ground_truth import validate_ground_truth_table

    table = validate_ground_truth_table({dataset: {c: r["test"] for c, r in runs.items()}}, where=str(path))
    doc = {"about": about, "group": group, "source": source, "unit": unit, "dataset_measure": {dataset: measure},
           "protocol": dict(protocol), group: table,
           "runs": {c: {k: v for k, v in r.items()} for c, r in runs.items()}, **dict(extra or {})}
    return atomic_save_json(path, doc)


def candidate_inputs(cache_dir, key: str, ds, candidate: str, kind: str, texts: Sequence[str], role: str, *,
                     resolution=None, multiple: int = 1, device=None, progress: bool = False,
                     log: Callable[[str], None] = print) -> tuple:
    """(image arrays of the candidate's backbone over ``ds.images`` (``tasks.images``, ``kind``, at the
    task's ``resolution`` / ``multiple``),
    (N, E) embeddings of the per-sample ``texts`` with its text encoder) for ``"backbone+encoder"``."""
    from models import list_models

    from .images import cached_image_arrays
    from .text import question_encoder_names

    backbone, enc = split_candidate(candidate, list_models(), question_encoder_names())
    images = cached_image_arrays(cache_dir, key, ds.image_fingerprint, ds.images, backbone, kind,
                                 resolution=resolution, multiple=multiple, device=device, progress=progress, log=log)
    return images, text_embeddings(cache_dir, key, texts, enc, role, log=log)


def probe_agreement(runs: Mapping[str, dict], score: str = "test") -> Optional[dict]:
    """Kendall tau between the fine-tuned ``score`` of the candidates and their LP-FT probe stage's
    (``record["probe"][score]``), ``{"kendall_tau", "n"}``; None when a run has no probe stage."""
    from finetuning.probe import rank_agreement

    if not runs or any("probe" not in r for r in runs.values()):
        return None
    tau = rank_agreement({c: r[score] for c, r in runs.items()}, {c: r["probe"][score] for c, r in runs.items()})
    return {"kendall_tau": None if tau is None else round(float(tau), 4), "n": len(runs),
            "of": f"fine-tuned {score} vs the probe stage's (head on frozen features)"}
