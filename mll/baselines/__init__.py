"""Baselines of VLM selection compared against MLL (Tan et al., ICML 2025):

* INB (:mod:`.inb`): select the hub model with the best ImageNet zero-shot accuracy.
* ModelGPT (:mod:`.modelgpt`): LOVM's language-only selector (Zohar et al., NeurIPS 2023): text-derived
  features + a linear model fitted on other datasets' ground truth; in the MLL benchmark fitted on the
  sample datasets (:mod:`.sample_fit`).
* The LOVM benchmark reproduced from its published tables (:mod:`.lovm`, measures in :mod:`.ranking`).
"""
from .inb import inb_rank, inb_scores, inb_select, rank_by_score
from .lovm import (LOVM_METHODS, LOVMResult, LOVMTables, MethodPredictions, ablate_modelgpt_features,
                   evaluate_predictions, load_lovm_tables, register_lovm_method, run_lovm_benchmark,
                   save_lovm_result)
from .modelgpt import (DEFAULT_TEMPLATES, LOVM_FEATURES, REGRESSORS, ModelGPT, features_to_frame,
                       leave_one_dataset_out, make_regressor, modelgpt_features, register_regressor)
from .ranking import METRICS
from .sample_fit import (MODELGPT_FITS, SampleDataset, graph_sample_datasets, modelgpt_target_predictions,
                         sample_ground_truth, wordnet_synonyms)

__all__ = [
    "inb_select", "inb_rank", "inb_scores", "rank_by_score",
    "ModelGPT", "modelgpt_features", "features_to_frame", "leave_one_dataset_out", "LOVM_FEATURES",
    "DEFAULT_TEMPLATES", "REGRESSORS", "register_regressor", "make_regressor",
    "LOVMTables", "load_lovm_tables", "run_lovm_benchmark", "evaluate_predictions", "LOVMResult",
    "MethodPredictions", "LOVM_METHODS", "register_lovm_method", "ablate_modelgpt_features", "save_lovm_result",
    "METRICS", "MODELGPT_FITS", "SampleDataset", "graph_sample_datasets", "modelgpt_target_predictions",
    "sample_ground_truth", "wordnet_synonyms",
]
