"""ModelGPT, the language-only VLM selection baseline of LOVM (Zohar et al., "LOVM: Language-Only
Vision Model Selection", NeurIPS 2023), as used by MLL (Tan et al., ICML 2025) for comparison.

ModelGPT predicts the zero-shot accuracy of every VLM m on a new dataset d from text alone:

1. **Text-derived features** x(m, d) in R^F (:func:`modelgpt_features`, the LOVM definitions, F = 7):
   text classification accuracy / macro-F1 of (noisy) class captions against the class prompts,
   the granularity of the class prompts, the closeness of captions to their own / the nearest other
   class, a superclass (synonym) similarity and the model's ImageNet accuracy.
2. **A linear model** fitted on the (features, ground-truth accuracy) pairs of *other* datasets
   (:class:`ModelGPT`)::

       y_hat(m, d) = w^T z(m, d) + b,    z = (x - mu) / sigma   (standardised on the training rows)
       (w, b) = argmin_{w,b} sum_{(m, d') in train} (y(m, d') - w^T z(m, d') - b)^2 + penalty(w)

   with penalty 0 (``"linear"``, LOVM's default), alpha*||w||_2^2 (``"ridge"``) or
   alpha*||w||_1 (``"lasso"``, scikit-learn scaling). Standardisation does not change OLS
   predictions; it makes the Ridge/Lasso penalty treat every feature alike.
3. **Selection**: the model with the highest predicted score (ties: name ascending, the rule of
   :func:`mll.baselines.inb.rank_by_score`).

Targets. ``target="accuracy"`` regresses the accuracy y(m, d) itself (LOVM's performance
prediction). ``target="centered"`` regresses y(m, d) - mean_m' y(m', d), each training dataset's
accuracies minus their mean over models: LOVM's model-ranking target, which removes the
dataset-difficulty offset the features cannot explain. Centred predictions rank models; they are
not accuracies.

:func:`leave_one_dataset_out` runs the LOVM protocol: for each dataset d, fit on every row whose
dataset is not d (d's ground truth is never passed to ``fit``) and predict d's rows.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common import Registry
from .inb import rank_by_score

__all__ = [
    "LOVM_FEATURES", "INDEX_NAMES", "DEFAULT_TEMPLATES", "REGRESSORS", "TARGETS",
    "register_regressor", "make_regressor", "ModelGPT", "leave_one_dataset_out",
    "modelgpt_features", "features_to_frame",
]

#: The seven LOVM features, named as in LOVM's ``eval_table_features.csv`` (its ``ALL_FEATURES``).
LOVM_FEATURES: Tuple[str, ...] = (
    "text-f1", "text-acc1", "intraclass_sim", "inter_close", "intra_close", "superclass_metric", "IN-score",
)
#: Required names of the two index levels of every feature frame / target series.
INDEX_NAMES: Tuple[str, str] = ("model", "dataset")
#: The class prompt of the MLL paper (CLIP's "a photo of a {class}.").
DEFAULT_TEMPLATES: Tuple[str, ...] = ("a photo of a {c}.",)
#: Regression targets (see the module docstring).
TARGETS: Tuple[str, ...] = ("accuracy", "centered")

# ----------------------------------------------------------------------------------------------
# regressor registry
# ----------------------------------------------------------------------------------------------
#: name -> factory ``f(random_state, **params) -> sklearn regressor``
REGRESSORS: Registry[Callable[..., object]] = Registry("regressor")

#: decorator registering a regressor factory under a name
register_regressor = REGRESSORS.register


@register_regressor("linear")
def _linear(random_state: int, **params):
    """Ordinary least squares (LOVM's default ``LinearRegression``)."""
    return LinearRegression(**params)


@register_regressor("ridge")
def _ridge(random_state: int, alpha: float = 1.0, **params):
    """L2-penalised least squares, ``alpha`` on the standardised features."""
    return Ridge(alpha=alpha, random_state=random_state, **params)


@register_regressor("lasso")
def _lasso(random_state: int, alpha: float = 0.01, **params):
    """L1-penalised least squares (LOVM's grid: alpha in {0.01, 0.1, 1})."""
    params.setdefault("max_iter", 10000)
    return Lasso(alpha=alpha, random_state=random_state, **params)


def make_regressor(name: str, random_state: int = 0, **params):
    """Build the regressor registered as ``name`` (``linear``, ``ridge``, ``lasso``)."""
    try:
        factory = REGRESSORS[name]
    except KeyError:
        raise ValueError(f"unknown regressor {name!r}; available: {', '.join(sorted(REGRESSORS))}") from None
    return factory(random_state, **params)


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------
def _check_index(index: pd.Index, what: str) -> None:
    if not isinstance(index, pd.MultiIndex) or list(index.names) != list(INDEX_NAMES):
        raise ValueError(
            f"{what} must be indexed by a MultiIndex named {list(INDEX_NAMES)}, got names "
            f"{list(index.names)} (use .set_index(['model', 'dataset']) or features_to_frame())")
    if index.has_duplicates:
        dup = index[index.duplicated()].unique().tolist()[:5]
        raise ValueError(f"{what} has duplicate (model, dataset) rows, e.g. {dup}")


def _numeric_block(frame: pd.DataFrame, what: str) -> np.ndarray:
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric; columns {list(frame.columns)}") from None
    if not np.isfinite(values).all():
        bad = frame.columns[~np.isfinite(values).all(axis=0)].tolist()
        raise ValueError(f"{what} has NaN or infinite values in columns {bad}")
    return values


def _check_features(features: pd.DataFrame, what: str = "features") -> None:
    if not isinstance(features, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(features).__name__}")
    if features.empty:
        raise ValueError(f"{what} is empty")
    _check_index(features.index, what)


def features_to_frame(rows: Mapping[Tuple[str, str], Mapping[str, float]]) -> pd.DataFrame:
    """Build a feature frame from ``{(model, dataset): {feature: value}}`` (e.g. the dicts returned by
    :func:`modelgpt_features`), indexed by ``(model, dataset)`` with the required level names.
    Columns follow the order of :data:`LOVM_FEATURES` where they belong to it, then the rest."""
    if not rows:
        raise ValueError("features_to_frame got no rows")
    for key in rows:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"row keys must be (model, dataset) tuples, got {key!r}")
    frame = pd.DataFrame.from_dict({k: dict(v) for k, v in rows.items()}, orient="index")
    frame.index = pd.MultiIndex.from_tuples(list(rows.keys()), names=list(INDEX_NAMES))
    ordered = [c for c in LOVM_FEATURES if c in frame.columns] + [c for c in frame.columns if c not in LOVM_FEATURES]
    return frame[ordered]


# ----------------------------------------------------------------------------------------------
# the predictor
# ----------------------------------------------------------------------------------------------
class ModelGPT:
    """LOVM's ModelGPT: a (standardised) linear model from text-derived features to zero-shot accuracy.

    Parameters
    ----------
    regressor : name in :data:`REGRESSORS` (``"linear"`` = LOVM's OLS, ``"ridge"``, ``"lasso"``).
    features : feature columns to use (default: every column of the frame given to :meth:`fit`).
    standardize : z-score every feature on the training rows before the regressor.
    target : ``"accuracy"`` (predict accuracy) or ``"centered"`` (accuracy minus its dataset mean:
        LOVM's model-ranking target; predictions are relative scores).
    regressor_params : keyword arguments of the regressor factory (e.g. ``{"alpha": 0.1}``).
    random_state : seed handed to the regressor (only randomised solvers use it).

    Inputs are DataFrames indexed by a ``(model, dataset)`` MultiIndex (level names required).
    """

    def __init__(self, regressor: str = "linear", *, features: Optional[Sequence[str]] = None,
                 standardize: bool = True, target: str = "accuracy",
                 regressor_params: Optional[Mapping[str, object]] = None, random_state: int = 0):
        if regressor not in REGRESSORS:
            raise ValueError(f"unknown regressor {regressor!r}; available: {', '.join(sorted(REGRESSORS))}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if features is not None:
            features = tuple(features)
            if not features or len(set(features)) != len(features):
                raise ValueError(f"features must be a non-empty list of distinct column names, got {features}")
        self.regressor = regressor
        self.features = features
        self.standardize = bool(standardize)
        self.target = target
        self.regressor_params = dict(regressor_params or {})
        self.random_state = int(random_state)

    # -- sklearn-like plumbing -------------------------------------------------------------------
    def get_params(self) -> dict:
        return dict(regressor=self.regressor, features=self.features, standardize=self.standardize,
                    target=self.target, regressor_params=dict(self.regressor_params),
                    random_state=self.random_state)

    def clone(self) -> "ModelGPT":
        """An unfitted copy with the same parameters."""
        return ModelGPT(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"ModelGPT({args})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "pipeline_")

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("ModelGPT is not fitted: call fit(features, targets) first")

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, features: pd.DataFrame, targets: pd.Series) -> "ModelGPT":
        """Fit on the rows of ``features`` (index ``(model, dataset)``, F feature columns) against
        ``targets`` (the ground-truth accuracy of the same rows; aligned by index, not by position).
        Neither input is modified."""
        _check_features(features)
        if not isinstance(targets, pd.Series):
            raise ValueError(f"targets must be a pandas Series, got {type(targets).__name__}")
        _check_index(targets.index, "targets")
        missing = features.index.difference(targets.index)
        if len(missing):
            raise ValueError(f"targets lack {len(missing)} rows of features, e.g. {missing[:3].tolist()}")
        extra = targets.index.difference(features.index)
        if len(extra):
            raise ValueError(f"targets have {len(extra)} rows absent from features, e.g. {extra[:3].tolist()}")
        names = self.features if self.features is not None else tuple(features.columns)
        absent = [c for c in names if c not in features.columns]
        if absent:
            raise ValueError(f"features lack the columns {absent}; available: {list(features.columns)}")
        X = _numeric_block(features.loc[:, list(names)], "features")
        y_series = targets.reindex(features.index).astype(float)
        y = _numeric_block(y_series.to_frame(), "targets")[:, 0]
        if self.target == "centered":
            dataset_mean = y_series.groupby(level="dataset").transform("mean").to_numpy()
            y = y - dataset_mean
        if X.shape[0] < 2:
            raise ValueError(f"fit needs at least 2 rows, got {X.shape[0]}")
        steps = [StandardScaler()] if self.standardize else []
        steps.append(make_regressor(self.regressor, self.random_state, **self.regressor_params))
        self.pipeline_ = make_pipeline(*steps).fit(X, y)
        self.feature_names_ = tuple(names)
        self.train_datasets_ = tuple(sorted(features.index.get_level_values("dataset").unique()))
        return self

    @property
    def coef_(self) -> pd.Series:
        """Weights w of the (standardised, if ``standardize``) features."""
        self._require_fitted()
        return pd.Series(np.ravel(self.pipeline_[-1].coef_), index=list(self.feature_names_), name="coef")

    @property
    def intercept_(self) -> float:
        self._require_fitted()
        return float(np.ravel(self.pipeline_[-1].intercept_)[0])

    # -- prediction ------------------------------------------------------------------------------
    def _model_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """Rows of ONE dataset indexed by model: accepts an index of model names or a
        ``(model, dataset)`` MultiIndex holding a single dataset."""
        if not isinstance(features, pd.DataFrame):
            raise ValueError(f"features must be a pandas DataFrame, got {type(features).__name__}")
        if features.empty:
            raise ValueError("features is empty")
        if isinstance(features.index, pd.MultiIndex):
            _check_index(features.index, "features")
            datasets = features.index.get_level_values("dataset").unique()
            if len(datasets) != 1:
                raise ValueError(f"predict() takes the rows of one dataset, got {len(datasets)}: "
                                 f"{list(datasets)[:5]}; use predict_many() for several")
            features = features.droplevel("dataset")
        if features.index.has_duplicates:
            raise ValueError(f"duplicate models in features: {features.index[features.index.duplicated()].tolist()[:5]}")
        absent = [c for c in self.feature_names_ if c not in features.columns]
        if absent:
            raise ValueError(f"features lack the columns {absent} the model was fitted on")
        return features

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """Predicted score of every model of one new dataset: a Series model -> score (an accuracy
        when ``target="accuracy"``, a relative score when ``"centered"``)."""
        self._require_fitted()
        frame = self._model_frame(features)
        X = _numeric_block(frame.loc[:, list(self.feature_names_)], "features")
        pred = self.pipeline_.predict(X)
        return pd.Series(pred, index=pd.Index([str(m) for m in frame.index], name="model"), name="predicted")

    def predict_many(self, features: pd.DataFrame) -> pd.DataFrame:
        """Predictions for several datasets at once: a models x datasets DataFrame."""
        self._require_fitted()
        _check_features(features)
        cols = {d: self.predict(block) for d, block in features.groupby(level="dataset", sort=True)}
        return pd.DataFrame(cols).rename_axis(index="model", columns="dataset")

    def rank(self, features: pd.DataFrame) -> List[str]:
        """Models of one dataset ordered best-first by predicted score (ties: name ascending)."""
        return rank_by_score(self.predict(features))

    def select(self, features: pd.DataFrame) -> str:
        """The model ModelGPT selects for one dataset: the highest predicted score."""
        return self.rank(features)[0]


def leave_one_dataset_out(model: ModelGPT, features: pd.DataFrame, targets: pd.Series, *,
                          datasets: Optional[Iterable[str]] = None, exclude_model: bool = False,
                          progress: bool = False) -> pd.DataFrame:
    """LOVM's leave-one-dataset-out protocol: for each held-out dataset d, a fresh clone of ``model``
    is fitted on the rows whose dataset is not d (features AND targets of d are sliced away before
    ``fit``) and predicts d's rows. Returns a models x datasets DataFrame of predictions.

    ``exclude_model=True`` applies the stricter rule the LOVM README states for performance
    prediction: the prediction for (m, d) comes from a fit without any row of dataset d or of
    model m (one fit per pair instead of per dataset)."""
    if not isinstance(model, ModelGPT):
        raise ValueError(f"model must be a ModelGPT, got {type(model).__name__}")
    _check_features(features)
    all_datasets = sorted(features.index.get_level_values("dataset").unique())
    held_out = all_datasets if datasets is None else list(datasets)
    unknown = sorted(set(held_out) - set(all_datasets))
    if unknown:
        raise ValueError(f"datasets {unknown} are not in the features")
    if len(all_datasets) < 2:
        raise ValueError("leave-one-dataset-out needs at least 2 datasets")
    if not isinstance(targets, pd.Series):
        raise ValueError(f"targets must be a pandas Series, got {type(targets).__name__}")
    _check_index(targets.index, "targets")
    level = features.index.get_level_values("dataset")
    models = features.index.get_level_values("model")
    target_level = targets.index.get_level_values("dataset")
    target_models = targets.index.get_level_values("model")
    iterator = held_out
    if progress:
        from tqdm.auto import tqdm
        protocol = "dataset+model" if exclude_model else "dataset"
        iterator = tqdm(held_out, desc=f"ModelGPT leave-{protocol}-out ({model.target})", unit="dataset")
    columns = {}
    for d in iterator:
        if not exclude_model:
            fitted = model.clone().fit(features[level != d], targets[target_level != d])
            columns[d] = fitted.predict(features[level == d])
            continue
        preds = {}
        for m in features[level == d].index.get_level_values("model"):
            fitted = model.clone().fit(features[(level != d) & (models != m)],
                                       targets[(target_level != d) & (target_models != m)])
            preds[m] = float(fitted.predict(features[(level == d) & (models == m)]).iloc[0])
        columns[d] = pd.Series(preds, name="predicted").rename_axis("model")
    return pd.DataFrame(columns).rename_axis(index="model", columns="dataset")


# ----------------------------------------------------------------------------------------------
# text-derived features
# ----------------------------------------------------------------------------------------------
def _encode(vlm, texts: List[str], what: str) -> np.ndarray:
    """``vlm.encode_texts(texts)`` as a float64 (len(texts), E) array of unit rows (validated)."""
    out = vlm.encode_texts(texts)
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().numpy()
    emb = np.asarray(out, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"vlm.encode_texts returned shape {emb.shape} for {len(texts)} {what}; expected (M, E)")
    if not np.isfinite(emb).all():
        raise ValueError(f"vlm.encode_texts returned non-finite values for the {what}")
    norms = np.linalg.norm(emb, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        raise ValueError(f"vlm.encode_texts must return L2-normalised rows; {what} norms range "
                         f"{norms.min():.4f}..{norms.max():.4f}")
    return emb


def _off_diagonal_max(sim: np.ndarray) -> np.ndarray:
    """Row-wise max over the off-diagonal entries of a square (C, C) matrix, C >= 2."""
    masked = sim.copy()
    np.fill_diagonal(masked, -np.inf)
    return masked.max(axis=1)


def modelgpt_features(vlm, classnames: Sequence[str], captions: Mapping[str, Sequence[str]],
                      imagenet_acc: float, *, templates: Sequence[str] = DEFAULT_TEMPLATES,
                      synonyms: Optional[Mapping[str, Sequence[str]]] = None, noise_sigma: float = 0.1,
                      random_state: int = 0) -> Dict[str, float]:
    """LOVM's text-derived features of one VLM on one dataset (``modelGPT/utils.py`` of the LOVM code,
    re-derived here; names as in ``eval_table_features.csv``).

    ``vlm`` is anything with ``encode_texts(list[str]) -> (M, E)`` L2-normalised rows (duck typing).
    Notation: C classes; T templates; class c has N_c captions; all embeddings unit-norm.

    * class prompts ("zero-shot weights"), (C, E):
      ``w_c = normalize( mean_t encode(template_t with {c} -> classname_c) )``
    * caption embeddings, (N, E), N = sum_c N_c: ``x_{c,j} = encode(captions[c][j])``
    * ``text-acc1`` / ``text-f1``: accuracy and macro-F1 of ``argmax_c' (x_{c,j} + eps)·w_c'`` against
      c, ``eps ~ N(0, noise_sigma^2 I_E)`` seeded by ``random_state`` (LOVM: sigma = 0.1, to make the
      text "images" harder; ``noise_sigma=0`` gives the noiseless scores).
    * ``intraclass_sim`` (granularity): ``mean_c max_{c' != c} w_c·w_c'``.
    * ``inter_close``: ``mean_c mean_j x_{c,j}·w_c`` (captions' closeness to their own class).
    * ``intra_close``: ``mean_c max_{c' != c} mean_j x_{c,j}·w_c'`` (closeness to the nearest other class).
    * ``superclass_metric`` (only when ``synonyms`` is given): ``mean_c mean_s w_c·encode(s)`` over the
      synonym / superclass strings s of class c (LOVM generated them with an LLM).
    * ``IN-score``: ``imagenet_acc`` (the model's ImageNet zero-shot accuracy; LOVM uses the
      mean per-class recall).

    Returns ``{feature: value}`` in :data:`LOVM_FEATURES` order; ``superclass_metric`` is present iff
    ``synonyms`` is given (fit and predict then check that the same columns are used).
    Differences from the LOVM code: the noise is seeded; ``intraclass_sim`` takes the max over
    c' != c exactly (LOVM zeroes the diagonal first, which floors the max at 0).
    """
    classnames = [str(c) for c in classnames]
    if len(classnames) < 2:
        raise ValueError(f"modelgpt_features needs at least 2 classes, got {len(classnames)}")
    if len(set(classnames)) != len(classnames):
        raise ValueError("classnames has duplicates")
    if not hasattr(vlm, "encode_texts"):
        raise ValueError(f"vlm must have encode_texts(texts) -> (M, E); got {type(vlm).__name__}")
    templates = [str(t) for t in templates]
    if not templates or any("{c}" not in t for t in templates):
        raise ValueError(f"every template must contain the placeholder '{{c}}', got {templates}")
    if not isinstance(captions, Mapping):
        raise ValueError(f"captions must map class name -> list of captions, got {type(captions).__name__}")
    absent = [c for c in classnames if c not in captions]
    if absent:
        raise ValueError(f"captions lack the classes {absent[:5]}")
    for c in classnames:
        if isinstance(captions[c], str) or len(captions[c]) == 0:
            raise ValueError(f"captions[{c!r}] must be a non-empty list of strings")
    imagenet_acc = float(imagenet_acc)
    if not (np.isfinite(imagenet_acc) and 0.0 <= imagenet_acc <= 1.0):
        raise ValueError(f"imagenet_acc must be an accuracy in [0, 1], got {imagenet_acc}")
    if not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}")

    C, T = len(classnames), len(templates)
    prompts = [t.replace("{c}", c) for c in classnames for t in templates]
    prompt_emb = _encode(vlm, prompts, "class prompts").reshape(C, T, -1).mean(axis=1)
    W = prompt_emb / np.linalg.norm(prompt_emb, axis=1, keepdims=True)  # (C, E)

    texts = [str(s) for c in classnames for s in captions[c]]
    labels = np.concatenate([np.full(len(captions[c]), i) for i, c in enumerate(classnames)])
    X = _encode(vlm, texts, "captions")  # (N, E)
    if X.shape[1] != W.shape[1]:
        raise ValueError(f"caption and prompt embeddings differ in width: {X.shape[1]} vs {W.shape[1]}")

    rng = np.random.default_rng(random_state)
    noisy = X + noise_sigma * rng.standard_normal(X.shape)
    pred = np.argmax(noisy @ W.T, axis=1)
    text_acc = float(np.mean(pred == labels))
    text_f1 = float(f1_score(labels, pred, labels=np.arange(C), average="macro", zero_division=0))

    S = X @ W.T  # (N, C) caption-prompt cosines
    per_class_mean = np.stack([S[labels == i].mean(axis=0) for i in range(C)])  # (C, C): row c = captions of c
    inter_close = float(np.mean(np.diag(per_class_mean)))
    intra_close = float(np.mean(_off_diagonal_max(per_class_mean)))
    intraclass_sim = float(np.mean(_off_diagonal_max(W @ W.T)))

    out: Dict[str, float] = {"text-f1": text_f1, "text-acc1": text_acc, "intraclass_sim": intraclass_sim,
                             "inter_close": inter_close, "intra_close": intra_close}
    if synonyms is not None:
        missing = [c for c in classnames if c not in synonyms or isinstance(synonyms[c], str) or not len(synonyms[c])]
        if missing:
            raise ValueError(f"synonyms must give a non-empty list for every class; missing/empty: {missing[:5]}")
        syn_texts = [str(s) for c in classnames for s in synonyms[c]]
        syn_labels = np.concatenate([np.full(len(synonyms[c]), i) for i, c in enumerate(classnames)])
        syn_sim = np.sum(_encode(vlm, syn_texts, "synonyms") * W[syn_labels], axis=1)  # w_c . encode(s)
        out["superclass_metric"] = float(np.mean([syn_sim[syn_labels == i].mean() for i in range(C)]))
    out["IN-score"] = imagenet_acc
    return out
