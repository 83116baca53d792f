"""Fine-tune a TQA candidate with a span head and score it with SQuAD F1 / exact match.

Model: the candidate's (truncated) encoder ``H = enc(question, context)`` (T, D) and a linear span
head ``[s_t, e_t] = W H_t + b`` (D -> 2). Loss: ``(CE(s, start) + CE(e, end)) / 2`` over the T
positions, with the answer's first / last token as targets (an answer cut off by truncation
targets position 0, the [CLS] token, as in the SQuAD 2.0 recipe). Prediction: the span
``argmax_{i <= j < i + L} s_i + e_j`` over context tokens only (``L = max_answer_tokens``), decoded
to the context characters ``context[offset_i.start : offset_j.end]``. Everything (encoder and head)
is trained with AdamW, warmup + cosine schedule (:mod:`finetuning.engine`), seeded.

``SpanFinetuneConfig(head="bilinear", init="probe")`` is LP-FT (Kumar et al., ICLR 2022): the
question-conditioned bilinear head of :class:`HeadConfig` is first trained on the candidate's frozen
token states (``probe``: the frozen-encoder protocol), then encoder and that head are fine-tuned
together.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

from ._tqa_data import QAExample, squad_scores
from .pipeline import GroundTruthStore

__all__ = ["SpanFinetuneConfig", "encode_qa", "SpanModel", "finetune_span", "predict_spans"]


@dataclass(frozen=True)
class SpanFinetuneConfig:
    """Protocol of one span-head fine-tuning run (``to_dict`` is what resumable stores compare)."""

    lr: float = 1e-4
    epochs: int = 2
    batch_size: int = 32
    head: str = "linear"            # span head on the encoder (``HeadConfig.head`` kinds)
    init: str = "random"            # "random": a new head; "probe": LP-FT, the head first trained on frozen states
    max_length: int = 128
    max_answer_tokens: int = 32
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    optimizer: str = "adamw"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def encode_qa(tokenizer, examples: Sequence[QAExample], max_length: int) -> Dict[str, object]:
    """Tokenise (question, context) pairs: ``input_ids`` etc. (N, T) tensors, answer token
    ``start`` / ``end`` (N,) (0 when truncated away), ``context_mask`` / ``question_mask`` (N, T) bool
    and the character ``offsets`` (N, T, 2) of every token in its context."""
    import torch
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("span fine-tuning needs a fast tokenizer (character offsets)")
    enc = tokenizer([e.question for e in examples], [e.context for e in examples], padding="max_length",
                    truncation="only_second", max_length=max_length, return_offsets_mapping=True,
                    return_tensors="pt")
    offsets = enc.pop("offset_mapping")
    n, t = enc["input_ids"].shape
    context_mask = torch.zeros(n, t, dtype=torch.bool)
    question_mask = torch.zeros(n, t, dtype=torch.bool)
    start, end = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    for i, ex in enumerate(examples):
        seq = enc.sequence_ids(i)
        ctx = [j for j, s in enumerate(seq) if s == 1]
        context_mask[i, ctx] = True
        question_mask[i, [j for j, s in enumerate(seq) if s == 0]] = True
        covering = [j for j in ctx if offsets[i, j, 0] < ex.answer_end and offsets[i, j, 1] > ex.answer_start]
        if covering:
            start[i], end[i] = covering[0], covering[-1]
    return {"inputs": dict(enc), "start": start, "end": end, "context_mask": context_mask,
            "question_mask": question_mask, "offsets": offsets}


def _span_head_module():
    import torch
    from torch import nn

    class SpanModel(nn.Module):
        """``encoder`` + a span head (:func:`_make_head`) giving start / end logits per token."""

        def __init__(self, encoder, head=None):
            super().__init__()
            self.encoder = encoder
            self.head = _make_head(int(encoder.config.hidden_size), "linear") if head is None else head

        def forward(self, question_mask=None, **inputs) -> "tuple[torch.Tensor, torch.Tensor]":
            h = self.encoder(**inputs).last_hidden_state
            return self.head(h, question_mask)

    return SpanModel


def SpanModel(encoder, head=None):  # noqa: N802 - a factory that defers the torch import
    """The span model of the module docstring around ``encoder`` (a base transformer); ``head``:
    a span head of :func:`_make_head` (default: a new linear one)."""
    return _span_head_module()(encoder, head)


def _with_question_mask(encoded: Dict[str, object]) -> Dict[str, object]:
    return {**encoded, "inputs": {**encoded["inputs"], "question_mask": encoded["question_mask"]}}


def predict_spans(model, encoded: Dict[str, object], examples: Sequence[QAExample], *, max_answer_tokens: int,
                  batch_size: int = 64) -> List[str]:
    """The predicted answer text of every example (best context span, see the module docstring)."""
    import torch
    model.eval()
    out: List[str] = []
    n = len(examples)
    band = None
    with torch.no_grad():
        for s in range(0, n, batch_size):
            inputs = {k: v[s:s + batch_size] for k, v in encoded["inputs"].items()}
            st, en = model(**inputs)
            mask = encoded["context_mask"][s:s + batch_size]
            neg = torch.finfo(st.dtype).min / 4
            st, en = st.masked_fill(~mask, neg), en.masked_fill(~mask, neg)
            t = st.shape[1]
            if band is None:
                i = torch.arange(t)
                band = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer_tokens)
            scores = (st[:, :, None] + en[:, None, :]).masked_fill(~band, neg)
            best = scores.flatten(1).argmax(dim=1)
            for k, b in enumerate(best.tolist()):
                i, j = divmod(b, t)
                off = encoded["offsets"][s + k]
                out.append(examples[s + k].context[int(off[i, 0]):int(off[j, 1])])
    return out


def finetune_span(encoder, tokenizer, train: Sequence[QAExample], test: Sequence[QAExample],
                  config: SpanFinetuneConfig, *, head=None, progress: bool = True, desc: str = "finetune") -> dict:
    """Train ``encoder`` + span head on ``train`` and score ``test``: ``{"f1", "exact_match"}`` (percent)
    plus ``train_seconds``, ``steps``, ``truncated_test`` (test answers cut off by ``max_length``).
    ``head``: the initial span head (LP-FT); default a new one of ``config.head``."""
    import torch
    from torch.nn import functional as F
    from finetuning.engine import build_optimizer, num_batches, run_epochs, warmup_cosine_lambda
    torch.manual_seed(config.seed)
    if head is None:
        head = _make_head(int(encoder.config.hidden_size), config.head)
    model = SpanModel(encoder, head)
    tr = _with_question_mask(encode_qa(tokenizer, train, config.max_length))
    te = _with_question_mask(encode_qa(tokenizer, test, config.max_length))
    n = len(train)
    total = num_batches(n, config.batch_size, drop_single=False) * config.epochs
    opt = build_optimizer(model, config.optimizer, config.lr, config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(total, int(config.warmup_fraction * total)))
    last = {}

    def batch_loss(idx):
        batch = {k: v[idx] for k, v in tr["inputs"].items()}
        # trim the batch to its longest real sequence (padding-only columns change nothing, cost time)
        width = int(batch["attention_mask"].sum(dim=1).max())
        batch = {k: v[:, :width] for k, v in batch.items()}
        st, en = model(**batch)
        keep = batch["attention_mask"].bool()
        last["loss"] = 0.5 * (F.cross_entropy(st.masked_fill(~keep, -1e4), tr["start"][idx]) +
                              F.cross_entropy(en.masked_fill(~keep, -1e4), tr["end"][idx]))
        return last["loss"]

    start_time = time.perf_counter()
    model.train()
    run_epochs(n, batch_loss, opt, sched, epochs=config.epochs, batch_size=config.batch_size,
               generator=torch.Generator().manual_seed(config.seed), lr=config.lr, drop_single=False,
               progress=progress, desc=desc)
    train_seconds = time.perf_counter() - start_time
    predictions = predict_spans(model, te, test, max_answer_tokens=config.max_answer_tokens)
    scores = squad_scores(predictions, [e.answer for e in test])
    truncated = int(sum(1 for i, e in enumerate(test) if te["start"][i] == 0))
    return {**scores, "train_seconds": round(train_seconds, 1), "steps": total, "truncated_test": truncated,
            "final_loss": float(last["loss"].detach())}


def probe_head(encoder, tokenizer, train: Sequence[QAExample], test: Sequence[QAExample],
               config: "HeadConfig") -> tuple:
    """LP stage of LP-FT: the span head of ``config`` trained on the frozen last-layer token states of
    ``encoder`` (a candidate, already truncated); returns ``(record, head)`` (record as
    :func:`train_span_head`)."""
    tr, te = encode_qa(tokenizer, train, config.max_length), encode_qa(tokenizer, test, config.max_length)
    last = int(encoder.config.num_hidden_layers)
    st_tr = layer_token_states(tokenizer, encoder, tr, [last])[last]
    st_te = layer_token_states(tokenizer, encoder, te, [last])[last]
    return train_span_head(st_tr, tr, st_te, te, test, config, return_head=True)


@dataclass(frozen=True)
class _StoreProtocol:
    """What a resumable store of runs is tied to: the span protocol and the data it ran on."""

    config: SpanFinetuneConfig
    dataset: str
    data_fingerprint: str
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return {**self.config.to_dict(), "dataset": self.dataset, "data_fingerprint": self.data_fingerprint,
                "n_train": self.n_train, "n_test": self.n_test}


def run_candidates(candidates: Sequence[str], dataset: str, train: Sequence[QAExample], test: Sequence[QAExample],
                   config: SpanFinetuneConfig, partial_path, *, data_fingerprint: str, weights_dir=None,
                   probe: "HeadConfig" = None, progress: bool = True, log=print) -> Dict[str, dict]:
    """Fine-tune every candidate (:mod:`tasks._tqa_models` names) on ``train``, score on ``test``,
    resumably: finished runs are kept in ``partial_path`` (tied to the protocol and
    ``data_fingerprint``) and skipped on a re-run. ``config.init == "probe"`` (LP-FT) first trains
    the head with ``probe`` (a :class:`HeadConfig`) on the frozen states; its scores are kept under
    ``"probe"``. Returns ``{candidate: record}`` of the finished runs."""
    import torch
    from ._tqa_models import get_candidate
    if config.init not in ("random", "probe"):
        raise ValueError(f"init must be 'random' or 'probe', got {config.init!r}")
    if config.init == "probe" and (probe is None or probe.head != config.head):
        raise ValueError("LP-FT (init='probe') needs a probe HeadConfig with the same head kind")
    proto = _StoreProtocol(config, dataset, data_fingerprint, len(train), len(test)).to_dict()
    if config.init == "probe":
        proto["probe"] = probe.to_dict()
    store = GroundTruthStore(partial_path, proto)
    out: Dict[str, dict] = {}
    for name in candidates:
        cand = get_candidate(name)
        if name in store.runs:
            log(f"{name}: finished run reused from {partial_path}")
        else:
            torch.manual_seed(config.seed)
            tokenizer, encoder = cand.load(weights_dir)
            extra, head = {}, None
            if config.init == "probe":
                lp, head = probe_head(encoder, tokenizer, train, test, probe)
                extra = {"probe": lp}
                log(f"{name}: probe F1 {lp['f1']:.2f}")
            torch.manual_seed(config.seed)
            record = finetune_span(encoder, tokenizer, train, test, config, head=head, progress=progress, desc=name)
            store.put(name, {"model": name, "dataset": dataset, **record, **extra})
            log(f"{name}: F1 {record['f1']:.2f}  EM {record['exact_match']:.2f}  ({record['train_seconds']} s)")
        out[name] = store.runs[name]
    return out


# --------------------------------------------------------------------------------------------------
# Frozen-encoder protocol: a span head trained on the token states of one layer
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadConfig:
    """Protocol of a span head on frozen token states (``to_dict`` is what resumable stores compare).

    ``head="bilinear"`` (question-conditioned, the attentive-reader span head): with ``q`` the mean
    of the question's token states, ``s_t = H_t . (A_s q + a_s)``, ``e_t = H_t . (A_e q + a_e)``
    (A: D x D). ``head="linear"``: ``[s_t, e_t] = W H_t + b``. Loss and decoding as in the module
    docstring."""

    head: str = "bilinear"
    lr: float = 1e-3
    epochs: int = 30
    batch_size: int = 64
    max_length: int = 128
    max_answer_tokens: int = 32
    weight_decay: float = 0.01
    seed: int = 0

    def to_dict(self) -> dict:
        return {"encoder": "frozen", **asdict(self)}


def layer_token_states(tokenizer, model, encoded: Dict[str, object], layers: Sequence[int], *,
                       batch_size: int = 32, progress: bool = False, desc: str = "states") -> Dict[int, object]:
    """``{layer: (N, T, D) float16 tensor}``: hidden state ``layer`` (0 = embeddings, l = output of
    transformer layer l) of ``model`` on the encoded pairs, one forward pass for every layer."""
    import torch
    model.eval()
    n = encoded["start"].shape[0]
    out = {l: [] for l in layers}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc, unit="batch")
    with torch.no_grad():
        for s in starts:
            inputs = {k: v[s:s + batch_size] for k, v in encoded["inputs"].items()}
            hidden = model(**inputs, output_hidden_states=True).hidden_states
            for l in layers:
                out[l].append(hidden[l].to(torch.float16))
    return {l: torch.cat(v) for l, v in out.items()}


class _StatesModel:
    """Stand-in for :class:`SpanModel` over cached states: ``model(index=idx)`` -> (start, end) logits."""

    def __init__(self, head, states, question_mask):
        self.head, self.states, self.question_mask = head, states, question_mask

    def eval(self):
        self.head.eval()
        return self

    def __call__(self, index):
        return self.head(self.states[index].float(), self.question_mask[index])


def _make_head(dim: int, kind: str):
    """The span head ``kind`` of :class:`HeadConfig`: ``head(H (B, T, D), question_mask (B, T))`` ->
    (start, end) logits (B, T)."""
    import torch
    from torch import nn

    class LinearHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(dim, 2)

        def forward(self, h, qmask):
            logits = self.proj(h)
            return logits[..., 0], logits[..., 1]

    class BilinearHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(dim, 2 * dim)
            nn.init.normal_(self.proj.weight, std=dim ** -1)
            nn.init.zeros_(self.proj.bias)

        def forward(self, h, qmask):
            m = qmask.to(h.dtype).unsqueeze(-1)
            q = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
            ws, we = self.proj(q).chunk(2, dim=-1)
            return torch.einsum("btd,bd->bt", h, ws), torch.einsum("btd,bd->bt", h, we)

    heads = {"linear": LinearHead, "bilinear": BilinearHead}
    if kind not in heads:
        raise ValueError(f"unknown span head {kind!r}; available: {sorted(heads)}")
    return heads[kind]()


def train_span_head(train_states, train_enc: Dict[str, object], test_states, test_enc: Dict[str, object],
                    test: Sequence[QAExample], config: HeadConfig, *, return_head: bool = False):
    """Train the span head of ``config`` on frozen ``train_states`` (N, T, D) and score ``test``:
    ``{"f1", "exact_match"}`` (percent), ``train_seconds``, ``steps``, ``final_loss``; with
    ``return_head`` also the trained head, as ``(record, head)``."""
    import torch
    from torch.nn import functional as F
    from finetuning.engine import build_optimizer, num_batches, run_epochs, warmup_cosine_lambda
    torch.manual_seed(config.seed)
    head = _make_head(int(train_states.shape[-1]), config.head)
    n = train_states.shape[0]
    total = num_batches(n, config.batch_size, drop_single=False) * config.epochs
    opt = build_optimizer(head, "adamw", config.lr, config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(total, total // 10))
    mask = train_enc["inputs"]["attention_mask"].bool()
    neg = -1e4
    last = {}

    def batch_loss(idx):
        st, en = head(train_states[idx].float(), train_enc["question_mask"][idx])
        keep = mask[idx]
        last["loss"] = 0.5 * (F.cross_entropy(st.masked_fill(~keep, neg), train_enc["start"][idx]) +
                              F.cross_entropy(en.masked_fill(~keep, neg), train_enc["end"][idx]))
        return last["loss"]

    t0 = time.perf_counter()
    head.train()
    run_epochs(n, batch_loss, opt, sched, epochs=config.epochs, batch_size=config.batch_size,
               generator=torch.Generator().manual_seed(config.seed), lr=config.lr, drop_single=False)
    seconds = time.perf_counter() - t0
    index_inputs = {"index": torch.arange(test_states.shape[0])}
    predictions = predict_spans(_StatesModel(head, test_states, test_enc["question_mask"]),
                                {**test_enc, "inputs": index_inputs}, test,
                                max_answer_tokens=config.max_answer_tokens)
    scores = squad_scores(predictions, [e.answer for e in test])
    record = {**scores, "train_seconds": round(seconds, 1), "steps": total, "final_loss": float(last["loss"].detach())}
    return (record, head) if return_head else record


def run_frozen_candidates(candidates: Sequence[str], dataset: str, train: Sequence[QAExample],
                          test: Sequence[QAExample], config: HeadConfig, partial_path, *, data_fingerprint: str,
                          weights_dir=None, progress: bool = True, log=print) -> Dict[str, dict]:
    """:func:`run_candidates` with the encoder frozen: candidates sharing a base model
    (:func:`tasks._tqa_models.base_groups`) get their token states from one forward pass of it, then
    each trains a span head on its layer's states. Resumable through ``partial_path``."""
    from ._tqa_models import base_groups
    protocol = {**config.to_dict(), "dataset": dataset, "data_fingerprint": data_fingerprint,
                "n_train": len(train), "n_test": len(test)}
    store = GroundTruthStore(partial_path, protocol)
    todo = [c for c in candidates if c not in store.runs]
    for name in candidates:
        if name in store.runs:
            log(f"{name}: finished run reused from {partial_path}")
    for loader, members in base_groups(todo).items():
        tokenizer, model = members[0][1].load_base(weights_dir)
        tr, te = encode_qa(tokenizer, train, config.max_length), encode_qa(tokenizer, test, config.max_length)
        layers = sorted({layer for _, layer in ((n, c.hidden_layer(model)) for n, c in members)})
        st_tr = layer_token_states(tokenizer, model, tr, layers, progress=progress, desc=f"{members[0][0]} train")
        st_te = layer_token_states(tokenizer, model, te, layers, progress=progress, desc=f"{members[0][0]} test")
        for name, cand in members:
            layer = cand.hidden_layer(model)
            record = train_span_head(st_tr[layer], tr, st_te[layer], te, test, config)
            record.update({"model": name, "dataset": dataset, "layer": layer,
                           "truncated_test": int((te["start"] == 0).sum())})
            store.put(name, record)
            log(f"{name}: F1 {record['f1']:.2f}  EM {record['exact_match']:.2f}  ({record['train_seconds']} s)")
        del st_tr, st_te
    return {c: store.runs[c] for c in candidates}
