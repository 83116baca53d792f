"""The offline zoo's fine-tuned ground-truth table, in the schema of :mod:`data.ground_truth`."""
from __future__ import annotations

import os
import platform
from typing import Mapping, Optional, Tuple

import torch

from .config import FinetuneConfig

__all__ = ["GROUP", "PROTOCOL_TEXT", "build_table"]

#: group name of the table (the key of the table in the JSON file, and the file stem).
GROUP = "offline_zoo"

PROTOCOL_TEXT = (
    "Full fine-tuning of each pre-trained network with a new linear head (all parameters trained). "
    "Per dataset: n_train_per_class + n_val_per_class images per class drawn (stratified, disjoint, "
    "seeded) from the train split, n_test_per_class from the test split. Images go through the "
    "model's own preprocessing, then an anti-aliased bilinear resize so the shorter side is "
    "`resolution` px (inputs already smaller stay native; the metrics' features are extracted through "
    "the same pipeline from the same training images). For every learning rate of `lrs`: "
    "same seed, fresh model, `epochs` epochs of `optimizer` with linear warm-up + cosine decay, "
    "no weight decay on biases/norms, batch-norm statistics updated in training mode; while the best "
    "validation accuracy sits at the edge of the grid, the grid grows by a decade on that side (at most "
    "`max_lr_extensions` times). At the learning rate with the best validation accuracy the run is "
    "repeated with `n_seeds` seeds; the reported value is the mean test accuracy (percent) over the "
    "seeds (`test_acc_seeds`, `test_acc_std` per run). Every run records its arithmetic (`precision`: "
    "float32, or bfloat16 autocast in the training steps' forward pass; absent = float32) and, for the "
    "ONNX-converted networks, the op chains fused in its graph (`fused`; absent = none)."
)


def build_table(records: Mapping[Tuple[str, str], dict], config: FinetuneConfig, *,
                about: Optional[str] = None, group: str = GROUP) -> dict:
    """Assemble the ground-truth JSON document from finished run records.

    Args:
        records: ``(model, dataset) -> record`` as returned by :func:`finetuning.finetune_pair`.
        config: the protocol every record was measured under.
        group: the table's group name (key of the table, and the file stem it is loaded under).

    Returns:
        ``{"about", "group", "source", "unit", "dataset_measure", "protocol", "elapsed_seconds",
        "machine", "chance_accuracy", <group>: {dataset: {model: test_acc}}, "runs":
        {dataset: {model: details}}}``; the table is checked with
        :func:`data.ground_truth.validate_ground_truth_table`.
    """
    from data.ground_truth import validate_ground_truth_table

    if not records:
        raise ValueError("build_table needs at least one record")
    table: dict = {}
    runs: dict = {}
    chance: dict = {}
    for (model, dataset), rec in records.items():
        if rec.get("model") != model or rec.get("dataset") != dataset:
            raise ValueError(f"record under ({model!r}, {dataset!r}) is for "
                             f"({rec.get('model')!r}, {rec.get('dataset')!r})")
        # unrounded: the table value is exactly the mean of the run's test_acc_seeds (bootstrap check)
        table.setdefault(dataset, {})[model] = float(rec["test_acc"])
        runs.setdefault(dataset, {})[model] = {k: v for k, v in rec.items() if k not in ("model", "dataset")}
        chance[dataset] = round(100.0 / rec["num_classes"], 2)
    validate_ground_truth_table(table, where=f"{group} table")
    return {
        "about": about or ("Fine-tuned test accuracies (percent) of the offline model zoo on the offline "
                           "datasets, measured by finetune.py in this repository. Keys: "
                           f"{group} -> dataset -> model -> value; per-run details under 'runs'."),
        "group": group,
        "source": "measured here by finetune.py (finetuning package)",
        "unit": "percent",
        "dataset_measure": {d: "accuracy" for d in table},
        "protocol": {"description": PROTOCOL_TEXT, **config.to_dict()},
        "elapsed_seconds": round(sum(float(r["seconds"]) for r in records.values()), 1),
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "platform": platform.platform(terse=True)},
        "chance_accuracy": chance,
        group: table,
        "runs": runs,
    }
