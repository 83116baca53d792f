"""The LOVM benchmark (Zohar et al., NeurIPS 2023) reproduced offline from its published tables:
ground-truth zero-shot accuracy of 35 open_clip VLMs on 23 datasets plus ModelGPT's text-derived
features of every (model, dataset) pair (``data/lovm/``, copied from the LOVM repository).

Protocol (LOVM's "model ranking" and "performance prediction" tasks, ``LOVM/lovm.py`` and
``modelGPT/model_gpt_predictor.py``): every dataset d is in turn the target; a method scores the 35
models for d without using d's ground truth; the measures of :mod:`mll.baselines.ranking` compare
the scores with d's ground truth; the table reports each measure per dataset and its mean over
the 23 datasets.

Methods (registry :data:`LOVM_METHODS`, each returns ranking scores and accuracy predictions,
both models x datasets):

* ``INB``: a_IN(m), the model's ImageNet-1k accuracy (the ``acc1`` of the ``imagenet1k`` rows), for
  every dataset: the ranking is the same everywhere and the predicted accuracy is a_IN(m).
* ``ModelGPT``: :class:`~mll.baselines.modelgpt.ModelGPT` leave-one-dataset-out, ranking scores from
  the ``target="centered"`` fit (LOVM's model ranking), accuracies from the ``target="accuracy"``
  fit (LOVM's performance prediction), features = the 7 LOVM features by default. Option
  ``exclude_model=True``: accuracy predictions for (m, d) also leave model m out of the fit (the
  stricter rule of the LOVM README; LOVM's own code leaves out only the dataset).
* ``Oracle``: the held-out ground truth itself, the upper bound of every measure (reference only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import pandas as pd

from common import Registry
from .modelgpt import INDEX_NAMES, LOVM_FEATURES, ModelGPT, leave_one_dataset_out
from .ranking import DEFAULT_K, METRICS

__all__ = [
    "IMAGENET_DATASET", "ACCURACY_FILE", "FEATURES_FILE", "LOVMTables", "default_lovm_dir",
    "load_lovm_tables", "MethodPredictions", "LOVM_METHODS", "register_lovm_method",
    "evaluate_predictions", "LOVMResult", "run_lovm_benchmark", "metric_label", "ablate_modelgpt_features",
    "write_csv_atomic", "save_lovm_result",
]

IMAGENET_DATASET = "imagenet1k"
ACCURACY_FILE = "eval_table.csv"
FEATURES_FILE = "eval_table_features.csv"
_MODEL_COL, _DATASET_COL = "model_fullname", "dataset"


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LOVMTables:
    """``accuracy``: models x datasets ground truth; ``features``: rows indexed by (model, dataset),
    one column per LOVM feature."""

    accuracy: pd.DataFrame
    features: pd.DataFrame

    @property
    def models(self) -> list:
        return list(self.accuracy.index)

    @property
    def datasets(self) -> list:
        return list(self.accuracy.columns)

    @property
    def imagenet_acc(self) -> pd.Series:
        """a_IN(m): each model's ground-truth accuracy on ``imagenet1k``."""
        if IMAGENET_DATASET not in self.accuracy.columns:
            raise ValueError(f"the accuracy table has no {IMAGENET_DATASET!r} column")
        return self.accuracy[IMAGENET_DATASET].rename("imagenet_acc")

    @property
    def targets(self) -> pd.Series:
        """The ground truth as a Series indexed by (model, dataset), the shape ModelGPT.fit takes."""
        return self.accuracy.stack().rename("accuracy").rename_axis(list(INDEX_NAMES))


def default_lovm_dir() -> Path:
    """``data/lovm`` of this project (resolved through the installed ``data`` package)."""
    return Path(str(resources.files("data"))) / "lovm"


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"missing LOVM table: {path} (the LOVM tables ship in data/lovm/, see its README)")
    frame = pd.read_csv(path, index_col=0)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{path} lacks the columns {absent}")
    if frame.duplicated([_MODEL_COL, _DATASET_COL]).any():
        raise ValueError(f"{path} has duplicate (model, dataset) rows")
    return frame


def load_lovm_tables(root: Union[str, Path, None] = None, *, target: str = "acc1",
                     features: Sequence[str] = LOVM_FEATURES) -> LOVMTables:
    """Load the LOVM ground truth (``target`` column of ``eval_table.csv``: ``acc1``, LOVM's
    PRED_TARGET, or ``mean_per_class_recall``) and the ModelGPT features from ``root``
    (default :func:`default_lovm_dir`). Checks that the model x dataset grid is complete and that
    both tables cover the same pairs."""
    root = default_lovm_dir() if root is None else Path(root)
    if target not in ("acc1", "mean_per_class_recall"):
        raise ValueError(f"target must be 'acc1' or 'mean_per_class_recall', got {target!r}")
    gt = _read_csv(root / ACCURACY_FILE, [_MODEL_COL, _DATASET_COL, target])
    accuracy = gt.pivot(index=_MODEL_COL, columns=_DATASET_COL, values=target)
    accuracy = accuracy.sort_index().sort_index(axis=1).rename_axis(index="model", columns="dataset")
    if accuracy.isna().any().any():
        holes = accuracy.isna().stack()
        raise ValueError(f"{ACCURACY_FILE}: incomplete model x dataset grid, e.g. {holes[holes].index[:3].tolist()}")

    feat = _read_csv(root / FEATURES_FILE, [_MODEL_COL, _DATASET_COL, *features])
    # keep only the needed columns before renaming: the file also has a "model" (architecture) column
    feat = (feat[[_MODEL_COL, _DATASET_COL, *features]]
            .rename(columns={_MODEL_COL: "model", _DATASET_COL: "dataset"})
            .set_index(list(INDEX_NAMES)).sort_index())
    expected = pd.MultiIndex.from_product([accuracy.index, accuracy.columns], names=list(INDEX_NAMES))
    if not feat.index.sort_values().equals(expected.sort_values()):
        raise ValueError(f"{FEATURES_FILE} and {ACCURACY_FILE} cover different (model, dataset) pairs")
    return LOVMTables(accuracy=accuracy, features=feat)


# ----------------------------------------------------------------------------------------------
# methods
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodPredictions:
    """``rank_scores``: models x datasets scores used to rank; ``accuracy``: models x datasets
    predicted accuracies (None if the method does not predict accuracy)."""

    rank_scores: pd.DataFrame
    accuracy: Optional[pd.DataFrame] = None


#: name -> ``f(tables, *, progress, **options) -> MethodPredictions``
LOVM_METHODS: Registry[Callable[..., MethodPredictions]] = Registry("LOVM method")

#: decorator registering a LOVM method under a name
register_lovm_method = LOVM_METHODS.register


@register_lovm_method("INB")
def _inb_method(tables: LOVMTables, *, progress: bool = False) -> MethodPredictions:
    scores = pd.DataFrame({d: tables.imagenet_acc for d in tables.datasets}).rename_axis(columns="dataset")
    return MethodPredictions(rank_scores=scores, accuracy=scores)


@register_lovm_method("ModelGPT")
def _modelgpt_method(tables: LOVMTables, *, regressor: str = "linear",
                     regressor_params: Optional[Mapping[str, object]] = None,
                     features: Sequence[str] = LOVM_FEATURES, standardize: bool = True,
                     random_state: int = 0, exclude_model: bool = False,
                     progress: bool = False) -> MethodPredictions:
    common = dict(regressor=regressor, regressor_params=regressor_params, features=features,
                  standardize=standardize, random_state=random_state)
    rank = leave_one_dataset_out(ModelGPT(target="centered", **common), tables.features, tables.targets,
                                 progress=progress)
    acc = leave_one_dataset_out(ModelGPT(target="accuracy", **common), tables.features, tables.targets,
                                exclude_model=exclude_model, progress=progress)
    return MethodPredictions(rank_scores=rank, accuracy=acc)


@register_lovm_method("Oracle")
def _oracle_method(tables: LOVMTables, *, progress: bool = False) -> MethodPredictions:
    return MethodPredictions(rank_scores=tables.accuracy.copy(), accuracy=tables.accuracy.copy())


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def metric_label(name: str, k: int) -> str:
    """Column label of a registered measure, e.g. ``R@k`` -> ``R@5``."""
    return name.replace("@k", f"@{k}")


def evaluate_predictions(preds: MethodPredictions, tables: LOVMTables, *, k: int = DEFAULT_K,
                         metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Per-dataset measures (rows: datasets, columns: measure labels) of one method's predictions.
    Accuracy measures are NaN when the method gives no accuracy predictions."""
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; available: {list(METRICS)}")
    for what, frame in (("rank_scores", preds.rank_scores), ("accuracy", preds.accuracy)):
        if frame is not None and set(frame.columns) != set(tables.datasets):
            raise ValueError(f"{what} predictions cover datasets {sorted(frame.columns)}, expected {tables.datasets}")
    rows = {}
    for d in tables.datasets:
        true = tables.accuracy[d]
        row = {}
        for n in names:
            metric = METRICS[n]
            pred = preds.rank_scores if metric.uses == "rank" else preds.accuracy
            row[metric_label(n, k)] = float("nan") if pred is None else metric(pred[d], true, k)
        rows[d] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(index="dataset")


@dataclass
class LOVMResult:
    """``per_dataset``: rows (method, dataset), one column per measure; ``summary``: rows method,
    the mean over datasets; ``predictions``: each method's :class:`MethodPredictions`."""

    per_dataset: pd.DataFrame
    summary: pd.DataFrame
    predictions: Dict[str, MethodPredictions] = field(default_factory=dict)


def run_lovm_benchmark(tables: LOVMTables,
                       methods: Union[Sequence[str], Mapping[str, Mapping[str, object]]] = ("INB", "ModelGPT"),
                       *, k: int = DEFAULT_K, metrics: Optional[Sequence[str]] = None,
                       progress: bool = False) -> LOVMResult:
    """Run every method of ``methods`` (names, or ``{name: options}`` passed to that method's
    factory) on ``tables`` and evaluate it on every dataset."""
    configs = {m: {} for m in methods} if not isinstance(methods, Mapping) else {m: dict(o) for m, o in methods.items()}
    if not configs:
        raise ValueError("no methods given")
    unknown = [m for m in configs if m not in LOVM_METHODS]
    if unknown:
        raise ValueError(f"unknown LOVM methods {unknown}; available: {sorted(LOVM_METHODS)}")
    per_dataset, predictions = {}, {}
    for name, options in configs.items():
        predictions[name] = LOVM_METHODS[name](tables, progress=progress, **options)
        per_dataset[name] = evaluate_predictions(predictions[name], tables, k=k, metrics=metrics)
    long = pd.concat(per_dataset, names=["method", "dataset"])
    summary = long.groupby(level="method", sort=False).mean()
    return LOVMResult(per_dataset=long, summary=summary, predictions=predictions)


def ablate_modelgpt_features(tables: LOVMTables, features: Sequence[str] = LOVM_FEATURES, *,
                             k: int = DEFAULT_K, metrics: Sequence[str] = ("R@k", "tau@k", "L1@k", "MAE"),
                             progress: bool = False, **options) -> pd.DataFrame:
    """LOVM's feature ablation (its ``generate_results.py --ablate_subset``): ModelGPT on every
    non-empty subset of ``features`` (2^F - 1 runs of the leave-one-dataset-out protocol). Returns
    one row per subset (``features`` joined by ``+``, ``n_features``) with the mean of each measure."""
    from itertools import combinations

    features = list(features)
    if not features or len(set(features)) != len(features):
        raise ValueError(f"features must be distinct names, got {features}")
    subsets = [list(c) for r in range(1, len(features) + 1) for c in combinations(features, r)]
    iterator = subsets
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(subsets, desc="ModelGPT feature ablation", unit="subset")
    rows = []
    for subset in iterator:
        preds = LOVM_METHODS["ModelGPT"](tables, features=subset, **options)
        means = evaluate_predictions(preds, tables, k=k, metrics=metrics).mean()
        rows.append({"features": "+".join(subset), "n_features": len(subset), **means.to_dict()})
    return pd.DataFrame(rows)


def write_csv_atomic(frame: pd.DataFrame, path: Union[str, Path], **to_csv_kwargs) -> Path:
    """Write ``frame`` as CSV to ``path`` atomically (temporary file in the same folder, then
    ``os.replace``), so an interrupted run never leaves a truncated table."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            frame.to_csv(fh, **to_csv_kwargs)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_lovm_result(result: LOVMResult, out_dir: Union[str, Path]) -> Dict[str, Path]:
    """Write ``summary.csv``, ``per_dataset.csv`` and, per method, ``{method}_rank_scores.csv`` /
    ``{method}_accuracy_pred.csv`` (models x datasets) under ``out_dir``. Returns the paths."""
    out_dir = Path(out_dir)
    paths = {"summary": write_csv_atomic(result.summary, out_dir / "summary.csv"),
             "per_dataset": write_csv_atomic(result.per_dataset, out_dir / "per_dataset.csv")}
    for name, preds in result.predictions.items():
        paths[f"{name}_rank_scores"] = write_csv_atomic(preds.rank_scores, out_dir / f"{name}_rank_scores.csv")
        if preds.accuracy is not None:
            paths[f"{name}_accuracy_pred"] = write_csv_atomic(preds.accuracy, out_dir / f"{name}_accuracy_pred.csv")
    return paths
