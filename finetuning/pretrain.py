"""Pre-train the small offline networks of :mod:`models.offline_trained` on offline source data.

One :class:`PretrainRecipe` per network: architecture, source dataset(s) (train split, optionally
``n_per_class`` images per class drawn with ``data.subsample_per_class(seed)``), input size, and the
optimisation of :func:`finetuning.engine.train_model` (cross-entropy, AdamW, linear warm-up + cosine
schedule, seeded shuffling). A mixture of sources concatenates their class lists
(:func:`models.offline_trained.source_label_offsets`).

Outputs in ``weights_dir``: ``{name}.pt`` (fp32 state dict) and one record per network in
``PROVENANCE.json`` (recipe, data, accuracies, sha256, torch version, wall time, command). Every
write is atomic; a network whose record matches its recipe and whose file matches the recorded
sha256 is skipped (resumable); per-network and provenance locks make two runs on one folder safe.

Accuracies recorded: ``train_accuracy`` (first 5000 training images), ``val_accuracy`` (source test
split, at most 200 images per class, seed 0) and ``check_accuracy`` (the first
:data:`CHECK_PER_SOURCE` test images of each source, re-measured by the tests).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from data import get_dataset, subsample_per_class
from data.cache import atomic_save_json, atomic_write, entry_lock
from data.fingerprint import file_sha256
from models.offline_trained import (ARCHITECTURES, PROVENANCE_FILE, build_network, excluded_targets,
                                    load_provenance, preprocess_for, source_label_offsets)

from .engine import OPTIMIZERS, accuracy_percent, prepare_inputs, train_model

__all__ = ["PretrainRecipe", "CHECK_PER_SOURCE", "source_tensors", "check_tensors", "record_is_current",
           "pretrain_network", "run_pretraining"]

CHECK_PER_SOURCE = 200
_TRAIN_ACC_MAX = 5000
_VAL_PER_CLASS = 200


@dataclass(frozen=True)
class PretrainRecipe:
    """How one network is pre-trained (every field goes into its provenance record)."""

    name: str
    arch: str
    sources: tuple[str, ...]
    input_size: int
    epochs: int
    arch_kwargs: Mapping = field(default_factory=dict)
    n_per_class: Optional[int] = None       # per source; None = the whole train split
    lr: float = 2e-3
    batch_size: int = 128
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if not self.name or not self.sources:
            raise ValueError(f"recipe {self.name!r}: needs a name and at least one source dataset")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"recipe {self.name!r}: unknown architecture {self.arch!r}; "
                             f"available: {', '.join(sorted(ARCHITECTURES))}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe {self.name!r}: unknown optimizer {self.optimizer!r}")
        if self.input_size < 8 or self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError(f"recipe {self.name!r}: need input_size >= 8, epochs >= 1, batch_size >= 2, lr > 0")

    def as_record(self) -> dict:
        """The recipe as canonical JSON values (what a stored record is compared with)."""
        rec = dataclasses.asdict(self)
        rec["sources"] = list(self.sources)
        rec["arch_kwargs"] = dict(self.arch_kwargs)
        return json.loads(json.dumps(rec, sort_keys=True))


def _load_sources(recipe: PretrainRecipe, split: str, select) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Concatenated inputs / offset labels of ``select(dataset) -> indices`` of every source."""
    preprocess = preprocess_for(recipe.input_size)
    datasets = [get_dataset(s, split) for s in recipe.sources]
    offsets = source_label_offsets([len(d.classes) for d in datasets])
    xs, ys, info = [], [], []
    for ds, off in zip(datasets, offsets):
        idx = np.asarray(select(ds), dtype=np.int64)
        x, y = prepare_inputs(ds, idx, preprocess, None, desc=f"{ds.name} {split}")
        xs.append(x)
        ys.append(y + off)
        info.append({"dataset": ds.name, "split": split, "n_images": int(len(idx)), "label_offset": int(off),
                     "classes": list(ds.classes)})
    return torch.cat(xs), torch.cat(ys), info


def source_tensors(recipe: PretrainRecipe, split: str = "train"):
    """``(x, y, info)`` of the recipe's training images (``split="train"``: ``n_per_class`` per class,
    seed ``recipe.seed``) or validation images (``"test"``: <= 200 per class, seed 0)."""
    if split == "train":
        def select(ds):
            return (np.arange(len(ds)) if recipe.n_per_class is None
                    else subsample_per_class(ds, recipe.n_per_class, recipe.seed))
    else:
        def select(ds):
            return subsample_per_class(ds, _VAL_PER_CLASS, 0)
    return _load_sources(recipe, split, select)


def check_tensors(recipe_or_record) -> tuple[torch.Tensor, torch.Tensor]:
    """The accuracy-check images: the first :data:`CHECK_PER_SOURCE` test images of each source."""
    rec = recipe_or_record
    if isinstance(rec, Mapping):
        rec = PretrainRecipe(**{**rec["recipe"], "sources": tuple(rec["recipe"]["sources"])})
    x, y, _ = _load_sources(rec, "test", lambda ds: np.arange(min(CHECK_PER_SOURCE, len(ds))))
    return x, y


def record_is_current(recipe: PretrainRecipe, record: Optional[Mapping], weights_dir: Path) -> bool:
    """True when ``record`` was made from ``recipe`` and its weight file exists with the recorded sha256."""
    if not record or record.get("recipe") != recipe.as_record():
        return False
    path = Path(weights_dir) / record["weights_file"]
    return path.is_file() and file_sha256(path) == record["sha256"]


def pretrain_network(recipe: PretrainRecipe, weights_dir: Path, *, command: str = "",
                     progress: bool = True) -> dict:
    """Train ``recipe`` from scratch, write ``{name}.pt`` atomically and return its provenance record."""
    start = time.time()
    x, y, train_info = source_tensors(recipe, "train")
    num_classes = sum(len(s["classes"]) for s in train_info)
    with torch.random.fork_rng(devices=[]):        # seeded initialisation; the caller's global RNG is untouched
        torch.manual_seed(recipe.seed)
        net = build_network(recipe.arch, recipe.arch_kwargs, num_classes, recipe.input_size)
    losses = train_model(net, x, y, lr=recipe.lr, epochs=recipe.epochs, batch_size=recipe.batch_size,
                         optimizer=recipe.optimizer, weight_decay=recipe.weight_decay,
                         warmup_fraction=recipe.warmup_fraction,
                         generator=torch.Generator().manual_seed(recipe.seed), progress=progress,
                         desc=recipe.name)
    train_seconds = time.time() - start
    net.eval()
    train_acc = accuracy_percent(net, x[:_TRAIN_ACC_MAX], y[:_TRAIN_ACC_MAX])
    del x, y
    vx, vy, val_info = source_tensors(recipe, "test")
    val_acc = accuracy_percent(net, vx, vy)
    cx, cy = check_tensors(recipe)
    check_acc = accuracy_percent(net, cx, cy)

    path = Path(weights_dir) / f"{recipe.name}.pt"
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    atomic_write(path, lambda fh: torch.save(state, fh))
    sources = [{"dataset": t["dataset"], "split": "train", "n_images": t["n_images"],
                "n_per_class": recipe.n_per_class, "label_offset": t["label_offset"], "classes": t["classes"]}
               for t in train_info]
    return {
        "name": recipe.name, "architecture": recipe.arch, "arch_kwargs": dict(recipe.arch_kwargs),
        "input_size": recipe.input_size, "mean": [0.5] * 3, "std": [0.5] * 3,
        "num_source_classes": num_classes, "feature_dim": int(net.body.out_dim),
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "sources": sources, "excluded_targets": list(excluded_targets(recipe.sources)),
        "epochs": recipe.epochs, "batch_size": recipe.batch_size, "optimizer": recipe.optimizer, "lr": recipe.lr,
        "weight_decay": recipe.weight_decay, "warmup_fraction": recipe.warmup_fraction, "seed": recipe.seed,
        "train_loss_per_epoch": [round(float(v), 5) for v in losses],
        "train_accuracy": round(train_acc, 3), "train_accuracy_n": int(min(_TRAIN_ACC_MAX, sum(s["n_images"] for s in sources))),
        "val_accuracy": round(val_acc, 3), "val_split": "test", "val_n": int(vy.numel()),
        "check_accuracy": round(check_acc, 3), "check_per_source": CHECK_PER_SOURCE, "check_n": int(cy.numel()),
        "weights_file": path.name, "sha256": file_sha256(path), "size_bytes": path.stat().st_size,
        "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
        "train_wall_seconds": round(train_seconds, 1), "wall_seconds": round(time.time() - start, 1),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "command": command,
        "recipe": recipe.as_record(),
    }


def _store_record(weights_dir: Path, record: dict, keep: Sequence[str]) -> None:
    """Insert ``record`` into PROVENANCE.json under its lock (read-modify-write, atomic)."""
    prov = Path(weights_dir) / PROVENANCE_FILE
    with entry_lock(prov):
        networks = load_provenance(weights_dir)
        networks[record["name"]] = record
        ordered = {n: networks[n] for n in keep if n in networks}
        ordered.update({n: r for n, r in networks.items() if n not in ordered})
        atomic_save_json(prov, {"format": "offline-pretrained-networks/1",
                                "about": "made by scripts/pretrain_offline.py (finetuning/pretrain.py)",
                                "networks": ordered})


def run_pretraining(recipes: Sequence[PretrainRecipe], weights_dir: Path, *, only: Optional[Sequence[str]] = None,
                    force: bool = False, command: str = "", progress: bool = True) -> list[dict]:
    """Pre-train every recipe (or those named in ``only``) whose stored record is not current;
    returns the records of the selected recipes (trained now or skipped)."""
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe names must be unique, got {names}")
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown networks {unknown}; recipes: {', '.join(names)}")
    weights_dir = Path(weights_dir)
    out = []
    for recipe in recipes:
        if only and recipe.name not in only:
            continue
        with entry_lock(weights_dir / f"{recipe.name}.pt"):
            record = load_provenance(weights_dir).get(recipe.name)
            if not force and record_is_current(recipe, record, weights_dir):
                print(f"{recipe.name}: up to date (sha256 {record['sha256'][:12]}), skipped")
            else:
                record = pretrain_network(recipe, weights_dir, command=command, progress=progress)
                _store_record(weights_dir, record, names)
                print(f"{recipe.name}: train {record['train_accuracy']:.1f}%  val {record['val_accuracy']:.1f}%  "
                      f"{record['size_bytes'] / 1e6:.2f} MB  {record['wall_seconds']:.0f} s")
        out.append(record)
    return out
