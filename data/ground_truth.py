"""Fine-tuned ground truth: the accuracies transferability scores are correlated against.

A *group* is one table ``dataset -> model -> fine-tuned value`` (higher = better). The published
groups ship as JSON files in ``data/ground_truth/`` and are discovered automatically; another file
can be added at run time with :func:`register_ground_truth_file`.

Shipped groups (figures as published; see each file's ``source``):

=============  ==================================================================  ================
group          models x datasets                                                   source
=============  ==================================================================  ================
``cnn_group``  11 ImageNet-supervised torchvision CNNs x 11 classification sets     EMMS code (= SFDA group 1)
``vit_group``  13 ViT-family models (DeiT, DINO, MoCo-v3, PVT, PVTv2, Swin) x 11    EMMS code
``ssl_group``  12 self-supervised ResNet-50s x 11                                  SFDA code (group 2)
``caption``    9 VisionEncoderDecoder captioners x 5 captioning sets               EMMS code
=============  ==================================================================  ================

File schema (one JSON object; the offline zoo's ``offline_zoo.json`` written by the fine-tuning
script uses the same one)::

    {
      "about":           str,                          # free text: what the numbers are
      "group":           str,                          # optional; defaults to the file stem
      "source":          str,                          # optional: where the figures come from
      "unit":            str,                          # optional: "percent", "fraction", ...
      "dataset_measure": {dataset: str},               # optional: measure per dataset
                                                       #   ("accuracy", "mean per-class accuracy", ...)
      "protocol":        {...},                        # optional: how the models were fine-tuned
      "<group>":         {dataset: {model: number}}    # REQUIRED: the table, keyed by the group name
      ...                                              # any other keys are kept as metadata
    }

Every value must be a finite number; every dataset must list at least two models (a ranking of one
model is meaningless). Datasets may list different models.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, List, Mapping

__all__ = [
    "GROUND_TRUTH_DIR",
    "load_ground_truth",
    "ground_truth_info",
    "load_ground_truth_runs",
    "ground_truth_seeds",
    "list_groups",
    "register_ground_truth_file",
    "validate_ground_truth_table",
]

#: Folder of the shipped ground-truth files (``{group}.json``).
GROUND_TRUTH_DIR = Path(__file__).resolve().parent / "ground_truth"

# group name -> JSON path, for files registered at run time (they win over the shipped folder).
_REGISTERED: Dict[str, Path] = {}


def _shipped_files() -> Dict[str, Path]:
    return {p.stem: p for p in sorted(GROUND_TRUTH_DIR.glob("*.json"))}


def _group_files() -> Dict[str, Path]:
    files = _shipped_files()
    files.update(_REGISTERED)
    return files


def list_groups() -> List[str]:
    """Names of every available group: the shipped files plus the ones registered at run time."""
    return sorted(_group_files())


def validate_ground_truth_table(table: object, *, where: str = "ground truth") -> Dict[str, Dict[str, float]]:
    """Check a ``dataset -> model -> value`` table and return a float-valued deep copy.

    Raises ``ValueError`` naming the offending dataset/model when the table is not a non-empty
    mapping of non-empty mappings of finite numbers, or a dataset has fewer than two models.
    """
    if not isinstance(table, Mapping) or not table:
        raise ValueError(f"{where}: expected a non-empty mapping dataset -> {{model: value}}, got {type(table).__name__}")
    out: Dict[str, Dict[str, float]] = {}
    for dataset, row in table.items():
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: dataset {dataset!r} maps to {type(row).__name__}, expected {{model: value}}")
        if len(row) < 2:
            raise ValueError(f"{where}: dataset {dataset!r} has {len(row)} model(s); a ranking needs at least 2")
        clean: Dict[str, float] = {}
        for model, value in row.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: value of model {model!r} on dataset {dataset!r} is {value!r}, "
                                 "expected a finite number")
            clean[str(model)] = float(value)
        out[str(dataset)] = clean
    return out


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"ground-truth file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"ground-truth file {path}: expected a JSON object at top level")
    return doc


def _table(doc: dict, path: Path, group: str) -> Dict[str, Dict[str, float]]:
    if group not in doc:
        raise ValueError(f"ground-truth file {path} has no table under the key {group!r} "
                         f"(keys: {', '.join(sorted(doc))}); see data.ground_truth's docstring for the schema")
    return validate_ground_truth_table(doc[group], where=f"ground-truth file {path}")


def _resolve(group: str) -> Path:
    files = _group_files()
    if group not in files:
        raise KeyError(f"unknown ground-truth group {group!r}; available: {', '.join(sorted(files))}")
    return files[group]


def load_ground_truth(group: str) -> Dict[str, Dict[str, float]]:
    """The table of ``group``: ``{dataset: {model: value}}`` (a fresh dict; safe to modify).

    Unknown group -> ``KeyError`` listing the available ones; malformed file -> ``ValueError``.
    """
    path = _resolve(group)
    return _table(_load_json(path), path, group)


def ground_truth_info(group: str) -> dict:
    """Metadata of ``group``: every top-level key of its file except the table, plus ``path``."""
    path = _resolve(group)
    doc = _load_json(path)
    info = {k: v for k, v in doc.items() if k != group}
    info.setdefault("group", group)
    info["path"] = str(path)
    return info


def load_ground_truth_runs(group: str) -> Dict[str, Dict[str, dict]]:
    """Per-run details of ``group``: ``{dataset: {model: run record}}`` from the file's ``"runs"``
    (the fine-tuning tables written by ``finetune.py``); ``{}`` for a group without them."""
    path = _resolve(group)
    runs = _load_json(path).get("runs", {})
    if not isinstance(runs, Mapping) or not all(isinstance(r, Mapping) for r in runs.values()):
        raise ValueError(f"ground-truth file {path}: 'runs' must map dataset -> {{model: record}}")
    return {str(d): {str(m): dict(rec) for m, rec in row.items()} for d, row in runs.items()}


def ground_truth_seeds(group: str) -> Dict[str, Dict[str, List[float]]]:
    """Per-seed values of ``group``: ``{dataset: {model: [test accuracy of each seed]}}``.

    Read from each run's ``test_acc_seeds``; a run without them (one seed, or a published table
    without runs) is left out, i.e. carries no seed noise. Each list's mean is the table's value
    (checked: a mismatch raises ``ValueError`` naming the cell)."""
    path = _resolve(group)
    table = _table(_load_json(path), path, group)
    out: Dict[str, Dict[str, List[float]]] = {}
    for dataset, row in load_ground_truth_runs(group).items():
        for model, rec in row.items():
            seeds = rec.get("test_acc_seeds")
            if seeds is None:
                continue
            vals = [float(v) for v in seeds]
            if not vals or not all(math.isfinite(v) for v in vals):
                raise ValueError(f"ground-truth file {path}: test_acc_seeds of {model!r} on {dataset!r} is {seeds!r}")
            value = table.get(dataset, {}).get(model)
            if value is None or not math.isclose(sum(vals) / len(vals), value, rel_tol=1e-9, abs_tol=1e-9):
                raise ValueError(f"ground-truth file {path}: the seeds of {model!r} on {dataset!r} average "
                                 f"{sum(vals) / len(vals):.6g}, the table says {value!r}")
            out.setdefault(dataset, {})[model] = vals
    return out


def register_ground_truth_file(path: str | os.PathLike, group: str | None = None) -> str:
    """Make the table in ``path`` available as a group and return the group name.

    ``group`` defaults to the file's ``"group"`` field, else the file stem. The file is read and
    validated now, so a broken file fails here and not halfway through an evaluation. Registering
    a name again replaces the earlier file (so a re-written table can be re-registered).
    """
    path = Path(path).resolve()
    doc = _load_json(path)
    if group is None:
        group = doc.get("group", path.stem)
    if not isinstance(group, str) or not group:
        raise ValueError(f"ground-truth file {path}: group name must be a non-empty string, got {group!r}")
    _table(doc, path, group)
    _REGISTERED[group] = path
    return group
