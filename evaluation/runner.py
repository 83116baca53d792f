"""Run transferability metrics over (dataset, model) pairs from the feature caches, resumably.

For every dataset d, model m and metric f (``metrics.get_metric``) the runner assembles the inputs
``f.requires`` from the caches (:class:`evaluation.inputs.DatasetInputs`), calls

    s[d, f, m] = f(**inputs)          (a float, higher = predicted to transfer better)

and records the wall time of that call alone (loading excluded). Scores are stored in a per-dataset
:class:`evaluation.score_cache.ScoreCache` as they are computed, so a re-run computes only what is
missing. The judged tables (rank correlation with fine-tuned accuracy) are built from the result by
:mod:`evaluation.tables`.

Missing caches are found before any metric runs: a missing ``source_probs`` file means the model has
no source head, so metrics that need it are skipped for that model with a printed note (LEEP, NCE);
any other missing file raises :class:`data.cache.CacheMissingError` naming every missing path.
Inputs whose provenance records (``data.cache``) were made from different data than the dataset's
labels (or than ``expected_fingerprint``, the dataset a caller just extracted) raise ``ValueError``
naming the files. A stored score is reused only while the sha256 of every input file and the
metric's code version (:func:`metric_code_version`) match; the others are recomputed with one note
per reason.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from tqdm.auto import tqdm

import metrics as metrics_lib
from common import Registry
from data.cache import CacheCorruptError, CacheLayout, CacheMissingError, read_record
from data.fingerprint import file_sha256

from .inputs import INPUT_NAMES, DatasetInputs
from .score_cache import ScoreCache, ScoreEntry, score_key

__all__ = ["TaskSpec", "TASKS", "get_task", "DatasetResult", "EvaluationResult", "evaluate", "evaluate_dataset",
           "worker_pool", "metric_code_version", "input_fingerprint", "resolve_metrics"]


@dataclass(frozen=True)
class TaskSpec:
    """A kind of target task: where its label embeddings come from and which inputs exist for it."""

    name: str
    label_source: str
    provides: FrozenSet[str]
    default_metrics: Optional[Tuple[str, ...]]  # None: every registered metric
    default_group: str
    default_encoders: Optional[Tuple[str, ...]] = None  # None: the script's encoders


#: Registry of tasks (name -> :class:`TaskSpec`).
TASKS: Registry[TaskSpec] = Registry("task")
TASKS.add("classification", TaskSpec(name="classification", label_source="class_names",
                                     provides=frozenset(INPUT_NAMES), default_metrics=None,
                                     default_group="cnn_group"))
# captioning sets have captions, not class labels (nor a source head over their "classes")
TASKS.add("caption", TaskSpec(name="caption", label_source="captions", provides=frozenset({"features", "label_embeddings"}),
                              default_metrics=("emms", "logme_flabel", "transrate_flabel"), default_group="caption"))


def get_task(name: str) -> TaskSpec:
    """The task ``name``; ``KeyError`` listing the available ones."""
    return TASKS[name]


@dataclass
class DatasetResult:
    """Scores of every (metric, model) on one dataset.

    ``scores[metric][model]`` and ``seconds[metric][model]`` hold the score and the wall time of the
    call that computed it (also for scores reused from the cache); ``skipped[metric][model]`` the
    reason a pair was not scored; ``ground_truth`` maps model -> fine-tuned value (None: unknown).
    """

    dataset: str
    models: List[str]
    metrics: List[str]
    scores: Dict[str, Dict[str, float]]
    seconds: Dict[str, Dict[str, float]]
    skipped: Dict[str, Dict[str, str]] = field(default_factory=dict)
    ground_truth: Optional[Dict[str, float]] = None
    computed: int = 0
    reused: int = 0
    backend: str = "numpy"   # metrics.Backend.key the metrics with fn.backends were computed on in this run


@dataclass
class EvaluationResult:
    """Per-dataset results of one evaluation plus the setup that produced them."""

    datasets: Dict[str, DatasetResult]
    task: str
    encoders: Tuple[str, ...]
    group: Optional[str] = None
    backend: str = "numpy"   # metrics.Backend.key (see DatasetResult.backend)

    @property
    def computed(self) -> int:
        return sum(r.computed for r in self.datasets.values())

    @property
    def reused(self) -> int:
        return sum(r.reused for r in self.datasets.values())


def resolve_metrics(names: Sequence[str], task: TaskSpec, encoders: Sequence[str]) -> Dict[str, Callable]:
    """``{name: metric}`` for ``task`` (what the CLIs check up front): ``KeyError`` listing the
    registered names for an unknown metric; ``ValueError`` naming repeated metrics, metrics the task
    cannot feed, or label-embedding metrics without ``encoders``."""
    if not names:
        raise ValueError("no metrics requested")
    if len(set(names)) != len(names):
        raise ValueError(f"metrics listed twice: {sorted({n for n in names if list(names).count(n) > 1})}")
    fns = {name: metrics_lib.get_metric(name) for name in names}
    for name, fn in fns.items():
        requires = tuple(getattr(fn, "requires", ()))
        if not requires or not set(requires) <= set(INPUT_NAMES):
            raise ValueError(f"metric {name!r} declares requires={requires!r}; expected a non-empty subset of {INPUT_NAMES}")
        missing = set(requires) - task.provides
        if missing:
            raise ValueError(f"metric {name!r} needs {sorted(missing)}, which task {task.name!r} does not provide "
                             f"(it provides {sorted(task.provides)})")
        if "label_embeddings" in requires and not encoders:
            raise ValueError(f"metric {name!r} needs label embeddings: give at least one text encoder")
    return fns


_CODE_VERSIONS: Dict[int, str] = {}


def metric_code_version(fn: Callable) -> str:
    """The code version a stored score of ``fn`` is tied to.

    ``fn.version`` when the metric declares one (``"version:<v>"``; bump it when the formula
    changes); otherwise the sha256 of the source of every module of the package defining ``fn``
    (metrics call each other: ``emms_evidence`` uses LogME's evidence, so hashing only the defining
    module and the ``_*.py`` helpers would miss a change that moves a score)."""
    version = getattr(fn, "version", None)
    if version is not None:
        return f"version:{version}"
    cached = _CODE_VERSIONS.get(id(fn))
    if cached is not None:
        return cached
    module = sys.modules.get(getattr(fn, "__module__", ""), None)
    source = getattr(module, "__file__", None)
    if source is None:
        raise ValueError(f"metric {getattr(fn, '__name__', fn)!r} has no source file and no 'version' attribute; "
                         "give it fn.version so its stored scores can be tied to its code")
    folder = Path(source).parent
    files = sorted(folder.glob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    _CODE_VERSIONS[id(fn)] = version = "sha256:" + h.hexdigest()[:32]
    return version


def input_fingerprint(inputs: DatasetInputs, requires: Sequence[str], model: str) -> Dict[str, str]:
    """``{cache-relative path: sha256 of the file}`` of every input file of ``model`` (content, not mtime)."""
    return {p.relative_to(inputs.layout.root).as_posix(): file_sha256(p) for p in inputs.input_files(requires, model)}


def _label_setup(requires: Sequence[str], inputs: DatasetInputs) -> Optional[str]:
    if "label_embeddings" not in requires:
        return None
    return f"{inputs.label_source.name}:{'+'.join(inputs.encoders)}:{inputs.stack_method}:{inputs.random_state}"


def _preflight(inputs: DatasetInputs, models: Sequence[str], fns: Mapping[str, Callable],
               log: Callable[[str], None], expected_fingerprint: Optional[str] = None) -> Dict[str, Dict[str, str]]:
    """Check every needed cache file exists and comes from the same data; return the (metric, model)
    pairs skipped for lack of a source head, raise CacheMissingError naming every other missing file."""
    skipped: Dict[str, Dict[str, str]] = {}
    missing: Dict[str, None] = {}
    for model in models:
        probs_path = inputs.layout.source_probs(inputs.dataset, model)
        for name, fn in fns.items():
            absent = [p for p in inputs.input_files(fn.requires, model) if not p.is_file()]
            hard = [p for p in absent if p != probs_path]
            if hard:
                missing.update((str(p), None) for p in hard)
            elif absent:
                reason = f"no source-head probabilities ({probs_path} missing)"
                skipped.setdefault(name, {})[model] = reason
                log(f"note: {inputs.dataset}: skipping metric {name!r} for model {model!r}: {reason}")
    if missing:
        raise CacheMissingError(f"dataset {inputs.dataset!r}: {len(missing)} missing cache file(s) under "
                                f"{inputs.layout.root}:\n  " + "\n  ".join(missing))
    _check_provenance(inputs, models, fns, expected_fingerprint)
    return skipped


def _dataset_of(path: Path) -> Optional[str]:
    """The dataset fingerprint in the record of cache file ``path`` (None: no record, or none in it)."""
    try:
        rec = read_record(path)
    except CacheCorruptError as exc:
        raise CacheCorruptError(f"{exc} (or re-run the extraction)") from None
    if rec is None:
        return None
    ds = rec["made_from"].get("dataset")
    return ds.get("fingerprint") if isinstance(ds, dict) else None


def _check_provenance(inputs: DatasetInputs, models: Sequence[str], fns: Mapping[str, Callable],
                      expected: Optional[str]) -> None:
    """Every per-sample input file with a record must come from the same data (and from ``expected``)."""
    files: Dict[Path, None] = {}
    for model in models:
        for fn in fns.values():
            for p in inputs.input_files(fn.requires, model):
                if p.is_file() and (p.parent.parent.name in ("features", "source_probs") or p == inputs.layout.labels(inputs.dataset)):
                    files.setdefault(p, None)
    made = {p: _dataset_of(p) for p in files}
    made = {p: fp for p, fp in made.items() if fp is not None}
    reference = expected
    if reference is None:
        labels = inputs.layout.labels(inputs.dataset)
        reference = made.get(labels) or next(iter(made.values()), None)
    stale = [p for p, fp in made.items() if fp != reference]
    if stale:
        what = "than the data just extracted" if expected is not None else "than the other cache files of this dataset"
        raise ValueError(f"dataset {inputs.dataset!r}: cache file(s) made from different data {what} (another run "
                         "writing other images under the same dataset name, or a partial re-extraction?):\n  "
                         + "\n  ".join(str(p) for p in stale)
                         + "\nre-run the extraction for this dataset, or use a different dataset name / cache directory")


@dataclass(frozen=True)
class _InputSpec:
    """What a worker process needs to rebuild a :class:`DatasetInputs` (picklable)."""

    root: str
    dataset: str
    encoders: Tuple[str, ...]
    label_source: str
    stack_method: str
    random_state: int

    def build(self) -> DatasetInputs:
        return DatasetInputs(CacheLayout(self.root), self.dataset, encoders=self.encoders,
                             label_source=self.label_source, stack_method=self.stack_method,
                             random_state=self.random_state)


#: one DatasetInputs per worker process and dataset, so a worker prepares the label embeddings once
_WORKER_INPUTS: Dict[_InputSpec, DatasetInputs] = {}


def _score_model(inputs: DatasetInputs, model: str, fns: Mapping[str, Callable],
                 backend: Optional["metrics_lib.Backend"] = None) -> Dict[str, tuple]:
    """Compute every metric in ``fns`` for ``model``: ``{name: ("score", value, seconds)}`` or
    ``{name: ("skipped", reason)}`` for a :class:`metrics.DegenerateInputError`. The metrics share one
    :class:`metrics.PreparedFeatures`, so the seconds of the first metric that needs a Gram matrix or
    an eigendecomposition include computing it. A non-numpy ``backend`` is passed to the metrics that
    accept one (``fn.backends``); they share one conversion of the prepared features."""
    out: Dict[str, tuple] = {}
    for name, fn in fns.items():
        kwargs = inputs.for_metric(fn.requires, model, prepared=True)
        if backend is not None and not backend.numpy and backend.name in getattr(fn, "backends", ()):
            kwargs["backend"] = backend
        start = time.perf_counter()
        try:
            value = fn(**kwargs)
        except metrics_lib.DegenerateInputError as exc:
            # valid input on which this metric is undefined (e.g. unregularised EMMS with D >= N):
            # record the pair as skipped, with the reason, and go on with the others
            out[name] = ("skipped", str(exc).split(". ")[0])
            continue
        except Exception as exc:
            exc.add_note(f"while computing metric {name!r} for model {model!r} on dataset {inputs.dataset!r}")
            raise
        elapsed = time.perf_counter() - start
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} returned {type(value).__name__} for {inputs.dataset}/{model}; "
                            "expected a float") from None
        out[name] = ("score", score, elapsed)
    return out


def _worker_init() -> None:
    # one BLAS thread per worker: n_jobs workers share the cores instead of oversubscribing them
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)


def _check_n_jobs(n_jobs) -> None:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")


def worker_pool(n_jobs: int) -> ProcessPoolExecutor:
    """A pool of ``n_jobs`` worker processes (spawned, one BLAS thread each) for
    :func:`evaluate_dataset`'s ``pool=``; reuse one across datasets to start the workers once."""
    _check_n_jobs(n_jobs)
    return ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)


def _worker_score_model(spec: _InputSpec, model: str, fns: Mapping[str, Callable],
                        backend: Optional["metrics_lib.Backend"] = None) -> Dict[str, tuple]:
    if spec not in _WORKER_INPUTS:
        _WORKER_INPUTS.clear()
        _WORKER_INPUTS[spec] = spec.build()
    return _score_model(_WORKER_INPUTS[spec], model, fns, backend)


def evaluate_dataset(layout: CacheLayout, dataset: str, models: Sequence[str], fns: Mapping[str, Callable], *,
                     cache: ScoreCache, encoders: Sequence[str] = (), label_source: str = "class_names",
                     stack_method: str = "project", random_state: int = 0,
                     ground_truth: Optional[Mapping[str, float]] = None, progress: bool = True,
                     log: Callable[[str], None] = tqdm.write, n_jobs: int = 1,
                     pool: Optional[ProcessPoolExecutor] = None,
                     expected_fingerprint: Optional[str] = None, backend="auto") -> DatasetResult:
    """Score every model of ``dataset`` with every metric in ``fns`` (name -> callable).

    Scores already in ``cache`` with unchanged inputs are reused; the rest are computed, timed and
    stored as each model finishes. One model's metrics run together on one
    :class:`metrics.PreparedFeatures`, so they share Gram matrices and eigendecompositions.
    ``n_jobs > 1`` scores that many models at once in worker processes (one BLAS thread each);
    the scores are the same as with ``n_jobs=1``. ``pool`` (from :func:`worker_pool`) runs the
    models in an existing pool instead of starting one (``n_jobs`` is then ignored).
    ``expected_fingerprint``: the dataset fingerprint the cache files must have been made from
    (their records are checked; files without a record are taken as they are).
    ``backend``: where the metrics that accept one (``fn.backends``) compute (:func:`metrics.resolve_backend`:
    ``"auto"`` = torch on the GPU when one is available, else numpy; ``"numpy"``, ``"torch"`` or a
    :class:`metrics.Backend`); recorded as ``result.backend``.
    """
    backend = metrics_lib.resolve_backend(backend)
    if len(models) < 1 or len(set(models)) != len(models):
        raise ValueError(f"dataset {dataset!r}: models must be a non-empty list without repeats, got {list(models)}")
    _check_n_jobs(n_jobs)
    inputs = DatasetInputs(layout, dataset, encoders=encoders, label_source=label_source,
                           stack_method=stack_method, random_state=random_state)
    if ground_truth is not None and any(m not in ground_truth for m in models):
        raise ValueError(f"dataset {dataset!r}: no ground truth for model(s) {[m for m in models if m not in ground_truth]}")
    skipped = _preflight(inputs, models, fns, log, expected_fingerprint)
    result = DatasetResult(dataset=dataset, models=list(models), metrics=list(fns),
                           scores={m: {} for m in fns}, seconds={m: {} for m in fns}, skipped=skipped,
                           ground_truth=None if ground_truth is None else {m: float(ground_truth[m]) for m in models},
                           backend=backend.key)
    pairs = [(model, name) for model in models for name in fns if model not in skipped.get(name, {})]
    entries: Dict[Tuple[str, str], ScoreEntry] = {}
    todo: Dict[str, Dict[str, Tuple[str, Dict[str, str], str]]] = {}   # model -> {metric: (key, inputs, code)}
    stale: Dict[str, List[str]] = {}                                   # reason -> ["model/metric", ...]
    codes = {name: metric_code_version(fn) for name, fn in fns.items()}
    for model, name in pairs:
        fn = fns[name]
        key = score_key(model, name, label_setup=_label_setup(fn.requires, inputs))
        made_from = input_fingerprint(inputs, fn.requires, model)
        entry, reason = cache.lookup(key, made_from, codes[name])
        if entry is None:
            todo.setdefault(model, {})[name] = (key, made_from, codes[name])
            if reason is not None:
                stale.setdefault(reason, []).append(f"{model}/{name}")
        else:
            entries[model, name] = entry
            result.reused += 1
    for reason, which in stale.items():
        shown = ", ".join(which[:6]) + (f", ... ({len(which)} in all)" if len(which) > 6 else "")
        log(f"note: {dataset}: recomputing {len(which)} stored score(s) ({shown}): {reason}")

    def store(model: str, outcome: Dict[str, tuple]) -> None:
        new: Dict[str, ScoreEntry] = {}
        for name, item in outcome.items():
            if item[0] == "skipped":
                result.skipped.setdefault(name, {})[model] = item[1]
                log(f"note: {dataset}: skipping metric {name!r} for model {model!r}: {item[1]}")
                continue
            key, made_from, code = todo[model][name]
            fn = fns[name]
            used_encoders = tuple(inputs.encoders) if "label_embeddings" in fn.requires else ()
            entry = ScoreEntry(model=model, metric=name, encoders=used_encoders, score=item[1], seconds=item[2],
                               inputs=made_from, code=code)
            entries[model, name] = entry
            result.computed += 1
            if input_fingerprint(inputs, fn.requires, model) != made_from:   # rewritten while we computed
                log(f"note: {dataset}: inputs of {model}/{name} changed while it was computed: score not stored")
                continue
            new[key] = entry
        cache.put_many(new)

    bar = tqdm(total=sum(len(v) for v in todo.values()), desc=f"scores[{dataset}]", unit="score",
               disable=not progress, leave=False)
    jobs = {model: {name: fns[name] for name in names} for model, names in todo.items()}
    if pool is None and (n_jobs == 1 or len(jobs) < 2):
        for model, model_fns in jobs.items():
            bar.set_postfix_str(model)
            store(model, _score_model(inputs, model, model_fns, backend))
            bar.update(len(model_fns))
    elif jobs:
        spec = _InputSpec(str(layout.root), dataset, tuple(encoders), label_source, stack_method, int(random_state))
        with contextlib.ExitStack() as stack:
            if pool is None:
                pool = stack.enter_context(worker_pool(min(n_jobs, len(jobs))))
            futures = {pool.submit(_worker_score_model, spec, model, model_fns, backend): model
                       for model, model_fns in jobs.items()}
            for future in as_completed(futures):
                model = futures[future]
                store(model, future.result())
                bar.set_postfix_str(model)
                bar.update(len(jobs[model]))
    bar.close()
    for model, name in pairs:                              # fill in the caller's (model, metric) order
        entry = entries.get((model, name))
        if entry is None:
            continue                                       # skipped (degenerate input)
        if not math.isfinite(entry.score):
            log(f"note: {dataset}: metric {name!r} gave a non-finite score ({entry.score}) for model {model!r}")
        result.scores[name][model] = entry.score
        result.seconds[name][model] = entry.seconds
    return result


def evaluate(cache_dir: str | os.PathLike, results_dir: str | os.PathLike, *, datasets: Sequence[str],
             models: Optional[Sequence[str]] = None, metrics: Optional[Sequence[str]] = None,
             encoders: Sequence[str] = (), task: str = "classification",
             ground_truth: Optional[Mapping[str, Mapping[str, float]]] = None, group: Optional[str] = None,
             stack_method: str = "project", random_state: int = 0, progress: bool = True,
             log: Callable[[str], None] = tqdm.write, n_jobs: int = 1,
             expected_fingerprints: Optional[Mapping[str, str]] = None, backend="auto") -> EvaluationResult:
    """Score ``models`` x ``metrics`` on every dataset; resumable through ``results_dir/scores/``.

    Parameters
    ----------
    cache_dir : root of the :class:`data.cache.CacheLayout` feature caches.
    results_dir : where the score cache lives (and where :func:`evaluation.save_results` writes).
    datasets : dataset names.
    models : model names, the same for every dataset; None = each dataset's models in ``ground_truth``.
    metrics : metric names (``metrics.list_metrics()``); None = the task's default set.
    encoders : text encoders whose label embeddings are stacked (K of them) for metrics that need them.
    task : key of :data:`TASKS` (``"classification"`` or ``"caption"``).
    ground_truth : ``{dataset: {model: value}}`` or None to rank without ground truth.
    group : name of the ground-truth group, recorded in the result.
    stack_method, random_state : how label embeddings of different widths are stacked.
    progress : show tqdm bars.
    log : receives the notes (skipped pairs, non-finite scores); default ``tqdm.write`` (stdout).
    n_jobs : models scored at once in worker processes (see :func:`evaluate_dataset`).
    expected_fingerprints : ``{dataset: fingerprint}`` of data just extracted (see :func:`evaluate_dataset`).
    backend : ``"auto"`` (torch on the GPU when available, else numpy), ``"numpy"``, ``"torch"`` or a
        :class:`metrics.Backend`, for the metrics that accept one (see :func:`evaluate_dataset`).
    """
    spec = get_task(task)
    _check_n_jobs(n_jobs)
    if not datasets:
        raise ValueError("no datasets requested")
    if metrics is None:
        metrics = list(spec.default_metrics) if spec.default_metrics is not None else metrics_lib.list_metrics()
    fns = resolve_metrics(list(metrics), spec, tuple(encoders))
    backend = metrics_lib.resolve_backend(backend)
    models_of: Dict[str, List[str]] = {}
    for d in datasets:
        gt_row = None if ground_truth is None else ground_truth.get(d)
        if ground_truth is not None and gt_row is None:
            raise ValueError(f"no ground truth for dataset {d!r}; it has: {', '.join(sorted(ground_truth))}")
        if models is None:
            if gt_row is None:
                raise ValueError("models=None takes the models from the ground truth; without ground truth, list them")
            models_of[d] = list(gt_row)
        else:
            models_of[d] = list(models)
            if gt_row is not None:
                lacking = [m for m in models if m not in gt_row]
                if lacking:
                    raise ValueError(f"dataset {d!r}: no ground truth for model(s) {lacking}")
    layout = CacheLayout(cache_dir)
    results: Dict[str, DatasetResult] = {}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(worker_pool(n_jobs)) if n_jobs > 1 else None   # workers start once
        for d in tqdm(list(datasets), desc="datasets", unit="dataset", disable=not progress or len(datasets) < 2):
            results[d] = evaluate_dataset(layout, d, models_of[d], fns, cache=ScoreCache(results_dir, d, log=log),
                                          encoders=encoders, label_source=spec.label_source,
                                          stack_method=stack_method, random_state=random_state,
                                          ground_truth=None if ground_truth is None else ground_truth[d],
                                          progress=progress, log=log, n_jobs=n_jobs, pool=pool,
                                          expected_fingerprint=(expected_fingerprints or {}).get(d), backend=backend)
    return EvaluationResult(datasets=results, task=spec.name, encoders=tuple(encoders), group=group, backend=backend.key)
