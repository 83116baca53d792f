"""ModelGPT in the MLL benchmark (paper Sec. 5.2): LOVM's linear model fitted on the ground truth of
the **sample datasets**, then used to pick models for the targets.

The sample datasets are the graph's sample sources (full scale: ImageNet, -V2, -Sketch, -A, -R;
offline: the offline train splits). For sample dataset s (classes = its synsets, C_s of them):

* ground truth ``y(m, s)`` = zero-shot accuracy of model m on the graph's images of s, classified
  among the C_s classes with the model's own prompts (the images are the ones the hub already
  encoded for labelling; the image cache is shared);
* features ``x(m, s)`` = :func:`mll.baselines.modelgpt.modelgpt_features` on the class names of s
  (WordNet names), captions from :func:`mll.selection.generate_class_descriptions` with the
  sample set's domain / task, and the synonym feature ``superclass_metric`` from
  :func:`wordnet_synonyms`.

``fit="sample"`` (the paper): ``ModelGPT.fit`` sees only the sample rows; the targets' ground truth is
never an input. ``fit="loto"``: the earlier protocol, leave-one-target-out on the targets' ground
truth. Either way the targets' features are computed the same way (their captions, synonyms from
WordNet) and the prediction is a models x targets frame.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from common import Registry
from .modelgpt import ModelGPT, features_to_frame, leave_one_dataset_out, modelgpt_features

__all__ = ["SampleDataset", "graph_sample_datasets", "sample_dataset_info", "sample_ground_truth",
           "wordnet_synonyms", "modelgpt_feature_rows", "modelgpt_target_predictions", "MODELGPT_FITS"]

_RESOURCES = Path(__file__).resolve().parents[1] / "resources"


@dataclass(frozen=True)
class SampleDataset:
    """The graph images of one sample source: ``labels[i]`` indexes ``wnids`` / ``classnames``."""

    name: str
    wnids: Tuple[str, ...]
    classnames: Tuple[str, ...]
    refs: Tuple[object, ...]
    labels: Tuple[int, ...]
    domain: str
    task: str


def _key(s: str) -> str:
    return "".join(ch for ch in s.casefold() if ch.isalnum())


@lru_cache(maxsize=1)
def _full_sample_info() -> Dict[str, dict]:
    with open(_RESOURCES / "mll_datasets.json") as fh:
        return {_key(k): v for k, v in json.load(fh)["sample_datasets"].items()}


def sample_dataset_info(source_name: str) -> Tuple[str, str]:
    """``(domain, task)`` of a sample source: ``mll_datasets.json``'s sample table (names compared
    without case / punctuation: ``imagenet_sketch`` = ``imagenet-sketch``), else the offline
    table for ``"{dataset}:{split}"`` sources. ValueError when neither knows it."""
    info = _full_sample_info().get(_key(source_name))
    if info is None:
        from ..graph import offline_dataset_info
        try:
            info = offline_dataset_info(source_name.split(":")[0])
        except KeyError:
            raise ValueError(f"no domain / task for sample source {source_name!r} (neither in mll_datasets.json's "
                             "sample_datasets nor in offline_class_synsets.json)") from None
    return info["domain"], info["task"]


def _distinct_names(wnids: Sequence[str], wordnet) -> Tuple[str, ...]:
    """WordNet names of ``wnids``; a name shared by several synsets gets " ({first hypernym})", and
    the wnid when that is still shared (e.g. ImageNet's two "crane" classes)."""
    names = [wordnet[w].name for w in wnids]
    counts = Counter(names)
    for i, w in enumerate(wnids):
        if counts[names[i]] > 1 and wordnet[w].hypernyms:
            names[i] = f"{names[i]} ({wordnet[wordnet[w].hypernyms[0]].name})"
    counts = Counter(names)
    return tuple(f"{n} ({w})" if counts[n] > 1 else n for n, w in zip(names, wnids))


def graph_sample_datasets(graph) -> List["SampleDataset"]:
    """One :class:`SampleDataset` per sample source of ``graph`` (sorted by name): its classes are
    the synsets of all its images, its images the graph images drawn from it (any node)."""
    refs_of: Dict[str, set] = {}
    for w in graph.nodes:
        for r in graph.images_of(w):
            refs_of.setdefault(r.source, set()).add(r)
    out = []
    for name in sorted(graph.sources):
        wnid_of = graph.sources[name].wnid_labels()
        wnids = tuple(sorted(set(wnid_of)))
        refs = tuple(sorted(refs_of.get(name, ())))
        if len(wnids) < 2 or not refs:
            raise ValueError(f"sample source {name!r} needs >= 2 classes and graph images, has {len(wnids)} / {len(refs)}")
        pos = {w: i for i, w in enumerate(wnids)}
        domain, task = sample_dataset_info(name)
        out.append(SampleDataset(name, wnids, _distinct_names(wnids, graph.wordnet), refs,
                                 tuple(pos[wnid_of[r.index]] for r in refs), domain, task))
    return out


def sample_ground_truth(vlms: Mapping[str, object], graph, datasets: Sequence[SampleDataset], *,
                        cache_dir=None) -> pd.DataFrame:
    """(M, S) zero-shot accuracy of every model on every sample dataset's graph images."""
    from ..labeling import graph_image_embeddings
    cols = {}
    for ds in datasets:
        y = np.asarray(ds.labels)
        acc = {}
        for m, vlm in vlms.items():
            emb = graph_image_embeddings(vlm, graph, list(ds.refs), cache_dir)
            cls = vlm.class_embeddings([vlm.prompts_for(c) for c in ds.classnames])
            acc[m] = float(np.mean(np.argmax(emb @ cls.T, axis=1) == y))
        cols[ds.name] = acc
    return pd.DataFrame(cols).rename_axis(index="model", columns="dataset")


def wordnet_synonyms(classname: str, wordnet, wnid: Optional[str] = None) -> List[str]:
    """Synonym / superclass strings of a class for LOVM's ``superclass_metric``: the other lemmas of
    its synset and the names of the synset's direct hypernyms. The synset is ``wnid`` when known,
    else the most frequent noun sense of the class name or, failing that, of its parts (split at
    " - ", "/", ",", "(" and "_": "0 - zero" -> "zero"). A class WordNet does not know gets
    ``[classname]`` (its feature is then the similarity of the prompt to the bare name)."""
    if wnid is None:
        for cand in [classname] + [p for p in re.split(r"\s+-\s+|/|,|\(|\)|_", classname) if p.strip()]:
            senses = wordnet.lookup(cand.strip())
            if senses:
                wnid = senses[0]
                break
    if wnid is None:
        return [classname]
    syn = wordnet[wnid]
    out = [lemma for lemma in syn.lemmas if lemma.casefold() != classname.casefold()]
    out += [wordnet[h].name for h in syn.hypernyms]
    return list(dict.fromkeys(out)) or [classname]


def modelgpt_feature_rows(vlms: Mapping[str, object], datasets: Mapping[str, Tuple[Sequence[str], Mapping, Mapping]],
                          imagenet_scores: Mapping[str, float], *, random_state: int = 0) -> pd.DataFrame:
    """The feature frame (index ``(model, dataset)``) of every model on every dataset;
    ``datasets[name] = (classnames, {class: [captions]}, {class: [synonyms]})``."""
    rows = {}
    for name, (classnames, captions, synonyms) in datasets.items():
        for m, vlm in vlms.items():
            rows[(m, name)] = modelgpt_features(
                vlm, list(classnames), captions, imagenet_scores[m],
                templates=tuple(t.replace("{}", "{c}") for t in vlm.templates), synonyms=synonyms,
                random_state=random_state)
    return features_to_frame(rows)


#: ModelGPT fit protocols of the benchmark: name -> f(features, target names, sample names,
#: sample ground truth, target ground truth (callable), model) -> models x targets predictions
MODELGPT_FITS: Registry[Callable[..., pd.DataFrame]] = Registry("ModelGPT fit")


def _series(gt: pd.DataFrame, index: pd.MultiIndex) -> pd.Series:
    return pd.Series([float(gt.loc[m, d]) for m, d in index], index=index, name="accuracy")


@MODELGPT_FITS.register("sample")
def _fit_sample(features, targets, samples, sample_truth, target_truth, model):
    """Fit on the sample datasets' rows only, predict the targets (the paper)."""
    level = features.index.get_level_values("dataset")
    train = features[level.isin(samples)]
    fitted = model.clone().fit(train, _series(sample_truth, train.index))
    return fitted.predict_many(features[level.isin(targets)])[list(targets)]


@MODELGPT_FITS.register("loto")
def _fit_loto(features, targets, samples, sample_truth, target_truth, model):
    """Leave-one-target-out on the targets' ground truth (sample datasets unused)."""
    level = features.index.get_level_values("dataset")
    feats = features[level.isin(targets)]
    return leave_one_dataset_out(model, feats, _series(target_truth(), feats.index))[list(targets)]


def modelgpt_target_predictions(vlms: Mapping[str, object], graph, tasks: Sequence, captions: Mapping[str, Sequence],
                                imagenet_scores: Mapping[str, float], *, fit: str = "sample",
                                target_ground_truth: Optional[Callable[[], pd.DataFrame]] = None,
                                regressor: str = "linear", random_state: int = 0, cache_dir=None) -> pd.DataFrame:
    """(M, T) ModelGPT's predicted accuracy of every model on every target task.

    ``tasks``: :class:`mll.tasks.TargetTask` s; ``captions[task]``: one caption list per class.
    ``fit="sample"`` fits on the graph's sample datasets (``target_ground_truth`` is not used and
    must be None); ``fit="loto"`` calls ``target_ground_truth()`` (models x targets) and fits
    leave-one-target-out."""
    if fit not in MODELGPT_FITS:
        raise ValueError(f"unknown ModelGPT fit {fit!r}; available: {sorted(MODELGPT_FITS)}")
    if fit == "sample" and target_ground_truth is not None:
        raise ValueError("fit='sample' never uses the targets' ground truth: pass target_ground_truth=None")
    if fit == "loto" and target_ground_truth is None:
        raise ValueError("fit='loto' needs target_ground_truth")
    from ..selection import generate_class_descriptions
    wn = graph.wordnet
    target_names = [t.name for t in tasks]
    inputs = {t.name: (list(t.classnames), dict(zip(t.classnames, captions[t.name])),
                       {c: wordnet_synonyms(c, wn) for c in t.classnames}) for t in tasks}
    sample_names: List[str] = []
    sample_truth = None
    if fit == "sample":
        datasets = graph_sample_datasets(graph)
        sample_names = [d.name for d in datasets]
        clash = sorted(set(sample_names) & set(target_names))
        if clash:
            raise ValueError(f"sample datasets and targets share the names {clash}")
        for d in datasets:
            caps = generate_class_descriptions(d.classnames, d.domain, d.task, wn)
            inputs[d.name] = (list(d.classnames), dict(zip(d.classnames, caps)),
                              {c: wordnet_synonyms(c, wn, w) for c, w in zip(d.classnames, d.wnids)})
        sample_truth = sample_ground_truth(vlms, graph, datasets, cache_dir=cache_dir)
    features = modelgpt_feature_rows(vlms, inputs, imagenet_scores, random_state=random_state)
    model = ModelGPT(regressor, random_state=random_state)
    return MODELGPT_FITS[fit](features, target_names, sample_names, sample_truth, target_ground_truth, model)
