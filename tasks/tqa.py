"""Text question answering (EMMS: "the same pipeline as the image caption task"; the published EMMS
code has no TQA part, so this protocol is ours).

* Label (F-label): the answer text of each sample (one label text per sample), embedded with every
  text encoder (``caption_embeddings/{dataset}/{encoder}.npy``, (N, E)), stacked to (N, E, K):
  label source ``"captions"``; only label-embedding metrics apply (EMMS, LogME / TransRate on the
  F-labels), as for captioning.
* Candidate feature X (N, D): the candidate's token states of (question, context) at its last kept
  layer, mean-pooled over the real tokens (padding masked): :mod:`tasks._tqa_models`.
* Ground truth (``finetune_tqa.py``): each candidate's encoder + a linear span head fine-tuned on the
  training questions, SQuAD F1 (percent) on the test questions (:mod:`tasks._tqa_finetune`).

Datasets (``data.get_dataset``): ``wordnet_qa`` (offline, BUILT HERE from WordNet 3.0 glosses,
recipe in :mod:`tasks._tqa_data`; not a published benchmark), ``squad_v1`` / ``squad_v2`` (full scale,
SQuAD JSON files under ``{data root}/squad/``). Candidates: ``minilm_l1`` ... ``minilm_l6`` (offline)
and six SQuAD checkpoints from local folders (full scale).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence

from data.registry import DatasetSpec
from Label_embedding.offline_encoders import OFFLINE_LABEL_ENCODERS
from evaluation.runner import TaskSpec

from ._tqa_data import QAExample, qa_fingerprint, read_squad_json, wordnet_qa
from ._tqa_models import FEATURE_DESCRIPTION, TQA_CANDIDATES, base_groups, list_candidates, pair_features
from .base import TaskPlugin, register_task
from .pipeline import cache_key, text_embeddings, write_features

__all__ = ["PLUGIN", "QADataset", "CANDIDATES", "ENCODERS", "DATASET", "N_FEATURE_SAMPLES", "SQUAD_FILES",
           "extract"]

DATASET = "wordnet_qa"
CANDIDATES = tuple(list_candidates(offline=True))
#: the offline registered text encoders (Label_embedding) that embed every answer: the F-labels of the
#: offline benchmark. spacy_md (static word vectors) is left out: rare WordNet names such as "Cadra"
#: are out of its vocabulary and it refuses an answer with no known word.
ENCODERS = OFFLINE_LABEL_ENCODERS
#: samples scored by the metrics: the first N training questions (= the fine-tuning train set)
N_FEATURE_SAMPLES = 1500
MAX_LENGTH = 128
#: SQuAD file of each split, per version (the official file names)
SQUAD_FILES = {"1.1": {"train": "train-v1.1.json", "dev": "dev-v1.1.json"},
               "2.0": {"train": "train-v2.0.json", "dev": "dev-v2.0.json"}}


class QADataset:
    """A list of :class:`tasks._tqa_data.QAExample` with the attributes the task pipeline reads
    (``fingerprint``: sha256 of the examples, ``questions`` / ``contexts`` / ``answers``)."""

    def __init__(self, examples: Sequence[QAExample], source: str):
        if not examples:
            raise ValueError(f"{source}: no QA examples")
        self.examples: List[QAExample] = list(examples)
        self.source = source
        self.fingerprint = qa_fingerprint(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> QAExample:
        return self.examples[i]

    @property
    def questions(self) -> List[str]:
        return [e.question for e in self.examples]

    @property
    def contexts(self) -> List[str]:
        return [e.context for e in self.examples]

    @property
    def answers(self) -> List[str]:
        return [e.answer for e in self.examples]


def _first(examples: Sequence[QAExample], n: Optional[int]) -> Sequence[QAExample]:
    if n is None:
        return examples
    if not 1 <= int(n) <= len(examples):
        raise ValueError(f"n must be in [1, {len(examples)}], got {n}")
    return examples[:int(n)]


def build_wordnet_qa_dataset(root, split: str, transform=None, n: Optional[int] = None,
                             wordnet_dir=None) -> QADataset:
    """The WordNet QA ``split`` (``train`` / ``test``), its first ``n`` questions (None: all)."""
    train, test = wordnet_qa(wordnet_dir)
    return QADataset(_first(train if split == "train" else test, n), f"wordnet_qa/{split}")


def _squad_builder(version: str):
    def build(folder, split: str, transform=None, n: Optional[int] = None) -> QADataset:
        path = folder / SQUAD_FILES[version][split]
        return QADataset(_first(read_squad_json(path), n), str(path))
    return build


def _squad_spec(version: str) -> DatasetSpec:
    files = SQUAD_FILES[version]
    tag = version.split(".")[0]
    return DatasetSpec(name=f"squad_v{tag}", kind="tqa", build=_squad_builder(version), splits=tuple(files),
                       description=f"SQuAD {version} (answerable questions; first answer = label)",
                       subdir="squad", required=tuple(files.values()),
                       layout=f"{{root}}/squad/{files['train']} and {files['dev']} (the official SQuAD {version} JSON)",
                       how_to_get="Download the SQuAD JSON files from https://rajpurkar.github.io/SQuAD-explorer/")


_PROVIDES = frozenset({"features", "label_embeddings"})

PLUGIN = register_task(TaskPlugin(
    name="tqa",
    specs=(TaskSpec(name="tqa", label_source="captions", provides=_PROVIDES,
                    default_metrics=("emms", "logme_flabel", "transrate_flabel"), default_group="offline_tqa",
                    default_encoders=ENCODERS),),
    evaluate_script="evaluate_metric_caption.py",
    label_text={"tqa": "the answer text of the sample (one embedding per sample)"},
    measure="F1",
    description="extractive text question answering: answer-text F-labels, pooled (question, context) features",
    datasets=(DatasetSpec(name=DATASET, kind="tqa", build=build_wordnet_qa_dataset, splits=("train", "test"),
                          description="extractive QA built here from WordNet 3.0 noun glosses (seeded recipe, "
                                      "tasks/_tqa_data.py; not a published benchmark)"),
              _squad_spec("1.1"), _squad_spec("2.0")),
    candidates={n: c.description for n, c in TQA_CANDIDATES.items()},
    extra={"feature": FEATURE_DESCRIPTION},
))


def extract(candidates: Sequence[str] = CANDIDATES, *, cache_dir, dataset: str = DATASET, split: str = "train",
            n: Optional[int] = N_FEATURE_SAMPLES, encoders: Sequence[str] = ENCODERS, data_root=None,
            weights_dir=None, max_length: int = MAX_LENGTH, batch_size: int = 32, progress: bool = True,
            log: Callable[[str], None] = print) -> Dict[str, str]:
    """Write the answer-text embeddings of every encoder and the features of every candidate for
    ``dataset``/``split`` (first ``n`` questions) into ``cache_dir``; cached entries made from the
    same data and settings are skipped. Returns ``{candidate: "extracted" | "skipped"}``."""
    import data
    unknown = [c for c in candidates if c not in TQA_CANDIDATES]
    if unknown:
        raise KeyError(f"unknown TQA candidate(s) {unknown}; available: {', '.join(TQA_CANDIDATES)}")
    options = {} if n is None else {"n": n}
    ds = data.get_dataset(dataset, split=split, root=data_root, **options)
    key = cache_key(dataset, split)
    for enc in encoders:
        text_embeddings(cache_dir, key, ds.answers, enc, "", progress=progress, log=log)
    status: Dict[str, str] = {}
    for base, members in base_groups(candidates).items():
        memo: Dict[str, dict] = {}

        def pooled(members=members, memo=memo) -> dict:
            """{candidate: (N, D)} of every member, from one forward pass of the shared base model."""
            if not memo:
                tokenizer, model = members[0][1].load_base(weights_dir)
                layer = {n: c.hidden_layer(model) for n, c in members}
                feats = pair_features(tokenizer, model, ds.questions, ds.contexts, layers=sorted(set(layer.values())),
                                      max_length=max_length, batch_size=batch_size, progress=progress, desc=base)
                memo.update({n: feats[l] for n, l in layer.items()})
            return memo

        for name, cand in members:
            t0 = time.perf_counter()
            made_from = {"candidate": name, "weights": cand.weights, "layers": cand.layers,
                         "feature": FEATURE_DESCRIPTION, "max_length": int(max_length)}
            _, status[name] = write_features(cache_dir, key, name, ds, made_from, lambda n=name: pooled()[n], log=log)
            log(f"[{status[name]}] {key}/{name} ({time.perf_counter() - t0:.1f} s)")
    return status
