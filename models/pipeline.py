"""Extract a list of models over a list of datasets into the on-disk cache (``data.cache`` layout).

One ``.npy`` per (model, dataset), written atomically with its provenance record
(:func:`data.cache.save_entry`): what it was made from is

    {"dataset": data.fingerprint.dataset_record(ds),        # content fingerprint, item count
     "model": model_record(name, model)}                    # class, dims, source head, weights, preprocess

An existing pair is reused only when the records of its features (and source probabilities, for a
model with a source head) and of ``labels/{dataset}.npy`` match and the files' hashes agree with
them; otherwise it is re-extracted with one note saying why (other data under the same name, new
images, another preprocessing, a corrupt or legacy file). Every model is built (not run) to read
its preprocessing, except the candidates of a network family (the offline zoo, whose record is
described without building, :func:`static_model_record`). A killed run loses nothing already
written; each pair is extracted under an
:func:`data.cache.entry_lock`, so two runs sharing the cache directory extract it once. The source
probabilities are written BEFORE the features. ``labels/{dataset}.npy`` (and ``captions/{dataset}.json``
for captioning sets) is rewritten when its record is stale; a valid record with different labels than
extracted now raises :class:`CacheMismatchError` (the data changed without changing its fingerprint).
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from data.cache import (CacheLayout, check_entry, entry_lock, load_json, load_npy, record_path, remove_stale_temps,
                        save_entry, save_json_entry, stale_note)
from data.fingerprint import dataset_record, describe

from .base import FeatureModel, MultiOutputFeatureModel
from .extraction import extract, extract_multi
from .registry import create_model, model_info

__all__ = ["CacheMismatchError", "PairResult", "prepare_dataset", "model_record", "extract_pair", "extract_family",
           "family_units",
           "static_model_record", "extract_to_cache"]


class CacheMismatchError(ValueError):
    """A cache file disagrees with what this run produced (labels / captions of a dataset)."""


@dataclass(frozen=True)
class PairResult:
    model: str
    dataset: str
    status: str          # "extracted" or "skipped"
    n: int | None        # rows written (None when skipped)
    seconds: float | None
    fingerprint: str | None = None   # the dataset's fingerprint (data.fingerprint.dataset_fingerprint)


def prepare_dataset(name: str, *, split: str = "train", data_root: str | os.PathLike | None = None,
                    n_per_class: int | None = None, random_state: int = 0) -> Dataset:
    """``data.get_dataset(name, split, root)``, optionally reduced to ``n_per_class`` items per class
    (``data.subsample_per_class`` with ``random_state``; captioning sets, whose items are their own
    class, are never subsampled)."""
    import data  # the dataset registry (imported lazily: the model registry does not need it)

    dataset = data.get_dataset(name, split=split, root=data_root)
    if n_per_class is None or data.get_dataset_spec(name).kind == "caption":
        return dataset
    idx = data.subsample_per_class(dataset, n_per_class, random_state=random_state)
    return Subset(dataset, [int(i) for i in idx])


def model_record(name: str, model: FeatureModel) -> dict:
    """The model part of a features entry's record: what, besides the data, the features depend on."""
    return _model_record(name, type(model), model.feature_dim, model.input_hw, model.num_source_classes,
                         model.preprocess)


def _model_record(name: str, cls: type, feature_dim: int, input_hw, num_source_classes: int | None,
                  preprocess) -> dict:
    try:
        weights = model_info(name).weights
    except ValueError:
        weights = None                     # a model from a custom factory, not in the registry
    return {"name": name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "feature_dim": int(feature_dim), "input_hw": list(input_hw),
            "num_source_classes": num_source_classes, "weights": weights,
            "preprocess": describe(preprocess)}


def static_model_record(name: str, device=None) -> dict | None:
    """``model_record(name, create_model(name, device=device))`` WITHOUT building the model (its
    weights are not read), for the candidates of a network family (:mod:`models.intermediate`);
    None otherwise."""
    from .intermediate import static_record_parts  # imported late: the zoo modules register in order

    parts = static_record_parts(name, device)
    return None if parts is None else _model_record(name, **parts)


def _check_or_write_labels(layout: CacheLayout, dataset: str, labels: np.ndarray, made_from: dict,
                           log: Callable[[str], None]) -> None:
    path = layout.labels(dataset)
    with entry_lock(path):
        remove_stale_temps(path)
        check = check_entry(path, made_from)
        if check.valid:
            cached = load_npy(path)
            if cached.shape != labels.shape or not np.array_equal(cached, labels):
                raise CacheMismatchError(
                    f"{path} holds {cached.shape[0]} labels that differ from the {labels.shape[0]} labels "
                    f"extracted now for dataset {dataset!r}, although the data's fingerprint is unchanged "
                    "(non-deterministic dataset?). Delete the cache files of this dataset.")
            return
        if check.reason:
            log(stale_note("labels", path, check.reason, "rewriting"))
        save_entry(path, labels, made_from)


def _check_or_write_captions(layout: CacheLayout, dataset: str, captions: list[str], made_from: dict,
                             log: Callable[[str], None]) -> None:
    path = layout.captions(dataset)
    with entry_lock(path):
        remove_stale_temps(path)
        check = check_entry(path, made_from)
        if check.valid:
            if load_json(path) != captions:
                raise CacheMismatchError(f"{path} holds captions that differ from those of dataset {dataset!r} now, "
                                         "although the data's fingerprint is unchanged; delete it")
            return
        if check.reason:
            log(stale_note("captions", path, check.reason, "rewriting"))
        save_json_entry(path, captions, made_from)


def _pair_problem(layout: CacheLayout, dataset: str, model_name: str, has_head: bool,
                  made_from: dict, dataset_part: dict) -> tuple[bool, str | None, str]:
    """(valid, reason or None, path named in the note) for one (model, dataset) pair."""
    checks = [(layout.features(dataset, model_name), made_from)]
    if has_head:
        checks.append((layout.source_probs(dataset, model_name), made_from))
    checks.append((layout.labels(dataset), dataset_part))
    for path, want in checks:
        check = check_entry(path, want)
        if not check.valid:
            return False, check.reason, str(path)
    return True, None, ""


def _remove_entry(path) -> None:
    for p in (path, record_path(path)):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def extract_pair(model_name: str, model: FeatureModel, ds_name: str, ds: Dataset, *, layout: CacheLayout,
                 dataset_rec: dict | None = None, batch_size: int = 64, num_workers: int = 0,
                 progress: bool = True, log: Callable[[str], None] = print) -> PairResult:
    """One (model, dataset) pair of :func:`extract_to_cache`: skipped when its entries are valid,
    else extracted and written (source probabilities, then features), all under the pair's
    :func:`data.cache.entry_lock`. ``dataset_rec``: ``dataset_record(ds)`` when already computed.
    Temporary files left by a writer killed mid-write are removed first (``remove_stale_temps``)."""
    drec = dataset_record(ds) if dataset_rec is None else dataset_rec
    mrec = model_record(model_name, model)
    has_head = model.num_source_classes is not None
    dataset_part = {"dataset": drec}
    made_from = {"dataset": drec, "model": mrec}
    feat_path = layout.features(ds_name, model_name)
    probs_path = layout.source_probs(ds_name, model_name)
    with entry_lock(feat_path):          # a second run waits here, then finds the pair done
        remove_stale_temps(feat_path)
        remove_stale_temps(probs_path)
        valid, reason, where = _pair_problem(layout, ds_name, model_name, has_head, made_from, dataset_part)
        if valid:
            return PairResult(model_name, ds_name, "skipped", None, None, drec["fingerprint"])
        if reason:
            log(stale_note(f"{model_name} on {ds_name}:", where, reason, "re-extracting"))
        t0 = time.perf_counter()
        out = extract(model, ds, batch_size=batch_size, num_workers=num_workers, progress=progress)
        _check_or_write_labels(layout, ds_name, out["labels"], dataset_part, log)
        if "captions" in out:
            _check_or_write_captions(layout, ds_name, out["captions"], dataset_part, log)
        _write_pair_entries(layout, ds_name, model_name, out, made_from)
    result = PairResult(model_name, ds_name, "extracted", int(out["features"].shape[0]),
                        time.perf_counter() - t0, drec["fingerprint"])
    if progress:
        print(f"[extract] {model_name} on {ds_name}: {out['features'].shape} "
              f"in {result.seconds:.1f}s -> {feat_path}")
    return result


def _write_pair_entries(layout: CacheLayout, ds_name: str, model_name: str, out: dict, made_from: dict) -> None:
    """Source probabilities (or removal of a stale file), then the features: the features file last."""
    probs_path = layout.source_probs(ds_name, model_name)
    if out["source_probs"] is not None:
        save_entry(probs_path, out["source_probs"], made_from)
    else:
        _remove_entry(probs_path)    # a stale file of an earlier model with a head
    save_entry(layout.features(ds_name, model_name), out["features"], made_from)


def extract_family(names: Sequence[str], ds_name: str, ds: Dataset, *, layout: CacheLayout,
                   build: Callable[[list[str]], "FeatureModel | MultiOutputFeatureModel"],
                   dataset_rec: dict | None = None, batch_size: int = 64, num_workers: int = 0,
                   progress: bool = True, log: Callable[[str], None] = print, device=None) -> list[PairResult]:
    """The pairs ``(name, ds_name)`` of several candidates of ONE network family: the pairs whose
    entries are missing or stale are extracted in one forward pass over the data (``build(stale)``
    returns a :class:`FeatureModel` for one name, a :class:`MultiOutputFeatureModel` for several)
    and written with the same records and files as :func:`extract_pair` one by one (records from
    :func:`static_model_record`, so nothing is built when every pair is valid). The locks of all
    the pairs are held, taken in sorted order (two runs cannot deadlock). ``seconds`` of an
    extracted pair = the shared pass's time / number of pairs it served. ``device``: where ``build``
    puts the models (the records name the class used there)."""
    drec = dataset_record(ds) if dataset_rec is None else dataset_rec
    dataset_part = {"dataset": drec}
    made_from = {}
    for name in names:
        mrec = static_model_record(name, device)
        if mrec is None:
            raise ValueError(f"{name} is not a candidate of a network family (models.intermediate.FAMILIES)")
        made_from[name] = {"dataset": drec, "model": mrec}
    results: dict[str, PairResult] = {}
    with ExitStack() as locks:
        for name in sorted(names):
            feat_path = layout.features(ds_name, name)
            locks.enter_context(entry_lock(feat_path))
            remove_stale_temps(feat_path)
            remove_stale_temps(layout.source_probs(ds_name, name))
        stale = []
        for name in names:
            has_head = made_from[name]["model"]["num_source_classes"] is not None
            valid, reason, where = _pair_problem(layout, ds_name, name, has_head, made_from[name], dataset_part)
            if valid:
                results[name] = PairResult(name, ds_name, "skipped", None, None, drec["fingerprint"])
                continue
            if reason:
                log(stale_note(f"{name} on {ds_name}:", where, reason, "re-extracting"))
            stale.append(name)
        if stale:
            model = build(stale)
            t0 = time.perf_counter()
            if isinstance(model, MultiOutputFeatureModel):
                outs = extract_multi(model, ds, batch_size=batch_size, num_workers=num_workers, progress=progress)
            else:
                outs = {stale[0]: extract(model, ds, batch_size=batch_size, num_workers=num_workers,
                                          progress=progress)}
            first = outs[stale[0]]
            _check_or_write_labels(layout, ds_name, first["labels"], dataset_part, log)
            if "captions" in first:
                _check_or_write_captions(layout, ds_name, first["captions"], dataset_part, log)
            for name in stale:
                _write_pair_entries(layout, ds_name, name, outs[name], made_from[name])
            seconds = (time.perf_counter() - t0) / len(stale)
            for name in stale:
                results[name] = PairResult(name, ds_name, "extracted", int(outs[name]["features"].shape[0]),
                                           seconds, drec["fingerprint"])
                if progress:
                    print(f"[extract] {name} on {ds_name}: {outs[name]['features'].shape} "
                          f"(one pass for {len(stale)}) -> {layout.features(ds_name, name)}")
    return [results[name] for name in names]


def family_units(model_names: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    """Group the names by network family (first-appearance order); names outside a family alone."""
    from .intermediate import family_of

    units: list[tuple[str | None, list[str]]] = []
    index: dict[str, int] = {}
    for name in dict.fromkeys(model_names):
        family = family_of(name)
        if family is None:
            units.append((None, [name]))
        elif family in index:
            units[index[family]][1].append(name)
        else:
            index[family] = len(units)
            units.append((family, [name]))
    return units


def extract_to_cache(model_names: Sequence[str], dataset_names: Sequence[str], *,
                     cache_dir: str | os.PathLike, split: str = "train",
                     data_root: str | os.PathLike | None = None,
                     weights_dir: str | os.PathLike | None = None, n_per_class: int | None = None,
                     random_state: int = 0, batch_size: int = 64, num_workers: int = 0,
                     device=None, progress: bool = True,
                     dataset_factory: Callable[[str], Dataset] | None = None,
                     model_factory: Callable[[str], FeatureModel] | None = None,
                     log: Callable[[str], None] = print) -> list[PairResult]:
    """Fill ``cache_dir`` with features / source_probs / labels of every (model, dataset) pair.

    Models are built one at a time (outer loop); a model is run only on the datasets whose entries
    are missing or stale (module docstring). With the registry (no ``model_factory``), the
    requested candidates of one network family (a network's final feature and its intermediate
    layers, :mod:`models.intermediate`) are served by ONE forward pass per dataset
    (:func:`extract_family`), and a family whose pairs are all valid is not built at all.
    ``dataset_factory(name)`` / ``model_factory(name)`` replace the registries (tests, custom data); by default datasets come from
    :func:`prepare_dataset` and models from :func:`models.create_model`. ``log`` receives the notes
    on stale entries (always shown; ``progress`` only controls bars and per-pair lines).
    """
    if not model_names or not dataset_names:
        raise ValueError("give at least one model and one dataset")
    original_names = list(model_names)
    use_families = model_factory is None
    if model_factory is None:
        for name in model_names:
            model_info(name)  # fail fast on unknown names, before any work
        model_factory = lambda name: create_model(name, weights_dir=weights_dir, device=device)  # noqa: E731
    if dataset_factory is None:
        dataset_factory = lambda name: prepare_dataset(name, split=split, data_root=data_root,  # noqa: E731
                                                       n_per_class=n_per_class, random_state=random_state)
    layout = CacheLayout(cache_dir)
    datasets: dict[str, tuple[Dataset, dict]] = {}

    def get_dataset(name: str) -> tuple[Dataset, dict]:
        if name not in datasets:
            ds = dataset_factory(name)
            datasets[name] = (ds, dataset_record(ds))
        return datasets[name]

    results: list[PairResult] = []
    if use_families:
        from .intermediate import build_family_model, family_of

        built: dict[tuple, object] = {}

        def build(names: list[str]):
            key = tuple(names)
            if key not in built:
                built.clear()            # one network in memory at a time
                built[key] = (create_model(names[0], weights_dir=weights_dir, device=device) if len(names) == 1
                              else build_family_model(names, device=device))
            return built[key]

        grouped: list[PairResult] = []
        for family, names in family_units(model_names):
            if family is None:
                continue
            for ds_name in dataset_names:
                ds, drec = get_dataset(ds_name)
                grouped.extend(extract_family(names, ds_name, ds, layout=layout, build=build, dataset_rec=drec,
                                              batch_size=batch_size, num_workers=num_workers, progress=progress,
                                              log=log, device=device))
            built.clear()
        done = {(r.model, r.dataset): r for r in grouped}
        model_names = [n for n in model_names if family_of(n) is None]
    for model_name in model_names:
        model = model_factory(model_name)
        for ds_name in dataset_names:
            ds, drec = get_dataset(ds_name)
            results.append(extract_pair(model_name, model, ds_name, ds, layout=layout, dataset_rec=drec,
                                        batch_size=batch_size, num_workers=num_workers, progress=progress,
                                        log=log))
        del model
    if use_families:
        pending = {(r.model, r.dataset): r for r in results}
        results = [done.get((m, d)) or pending[(m, d)] for m in original_names for d in dataset_names]
    return results
