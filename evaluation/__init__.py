"""Evaluate transferability metrics against fine-tuned ground truth (EMMS, Meng et al., NeurIPS 2023).

Pipeline: feature caches (:mod:`data.cache`) -> :func:`evaluate` (every metric on every
(dataset, model), timed, resumable score cache) -> tables (:mod:`evaluation.tables`: scores,
Kendall / weighted tau / Pearson / Rel@k against ground truth, agreement between metrics, averages)
-> :func:`save_results` (CSV + JSON) and :mod:`evaluation.report` (text tables, PNG figures).
"""
from .inputs import INPUT_NAMES, LABEL_SOURCES, DatasetInputs, stack_encoder_embeddings
from .results import result_to_json, save_results
from .runner import TASKS, DatasetResult, EvaluationResult, evaluate, evaluate_dataset, get_task
from .score_cache import ScoreCache, ScoreEntry
from .tables import RANK_MEASURES, agreement_table, rankings, ranking_table, scores_table, summary_table

__all__ = [
    "INPUT_NAMES", "LABEL_SOURCES", "DatasetInputs", "stack_encoder_embeddings",
    "TASKS", "DatasetResult", "EvaluationResult", "evaluate", "evaluate_dataset", "get_task",
    "ScoreCache", "ScoreEntry",
    "RANK_MEASURES", "agreement_table", "rankings", "ranking_table", "scores_table", "summary_table",
    "save_results", "result_to_json",
]
