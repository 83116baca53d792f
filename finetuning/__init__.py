"""Fine-tuned ground truth for the offline model zoo.

The transferability scores of this project (EMMS, Meng et al., NeurIPS 2023, and its baselines)
are judged by how well they rank models by their *fine-tuned* accuracy. This package measures that
accuracy for the offline zoo with one documented, CPU-sized protocol (:class:`FinetuneConfig`):
full fine-tuning with a new head, a learning-rate grid picked on a validation split carved from
the train split and extended until it brackets the optimum, several seeds at the chosen rate,
fixed epochs, reduced resolution, fixed per-class subset sizes. :mod:`finetuning.protocol` gives
the metrics the same training images and image pipeline; :mod:`finetuning.probe` is the
linear-probe yardstick on those features; :mod:`finetuning.cost` times runs.

Entry points: :func:`run_benchmark` (every model x dataset, resumable, writes the table),
:func:`finetune_pair` (one run with lr selection), :func:`build_table` (the JSON document in the
schema of :mod:`data.ground_truth`). ``finetune.py`` at the repository root is the script.
"""
from .config import FinetuneConfig
from .engine import (OPTIMIZERS, accuracy_percent, prepare_inputs, reduced_size, register_optimizer,
                     train_model, warmup_cosine_lambda)
from .results import ResultsStore
from .runner import TimeBudgetExceeded, finetune_pair, next_lr, run_benchmark, select_best_lr
from .splits import protocol_subsets, stratified_subsets
from .table import GROUP, build_table

__all__ = [
    "FinetuneConfig", "OPTIMIZERS", "register_optimizer", "reduced_size", "prepare_inputs",
    "train_model", "accuracy_percent", "warmup_cosine_lambda", "ResultsStore", "finetune_pair",
    "run_benchmark", "select_best_lr", "next_lr", "TimeBudgetExceeded", "stratified_subsets",
    "protocol_subsets", "GROUP", "build_table",
]
