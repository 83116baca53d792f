"""Text question answering data: SQuAD-format examples, the SQuAD 1.1 / 2.0 JSON reader and writer,
SQuAD answer scoring (EM / F1), and the WordNet 3.0 extractive QA set built here.

Example: ``QAExample(id, question, context, answer, answer_start)`` with
``context[answer_start:answer_start + len(answer)] == answer`` (checked when built or read).

WordNet QA recipe (:func:`build_wordnet_qa`; the set is BUILT HERE from WordNet 3.0's noun glosses,
real text, but it is not a published benchmark):

1. Eligible noun synsets: first lemma of 1-3 words (letters, space, hyphen, apostrophe), a first
   hypernym whose first lemma is also such a name (different from the lemma), a definition (gloss up
   to the first ``;`` / example) of 4-18 words that contains neither name.
2. The eligible synsets are split once, by a seeded permutation, into disjoint train / test pools
   (``test_fraction``); an example and its whole context use synsets of one pool only.
3. Each example targets one synset ``t`` (every synset at most once). Its context is
   ``context_size`` sentences ``"{name}, a kind of {hypernym}, is {definition}."``: ``t`` and
   distractors taken first from its cousins (other hyponyms of its hypernym's siblings), then its
   siblings, then at random from the pool, each with a hypernym and name not already in the context;
   the sentences are shuffled.
4. A question from one of three templates, drawn uniformly among those whose answer occurs exactly
   once in the context (whole-word match): ``"What is {definition}?"`` -> the name;
   ``"What is {name} a kind of?"`` -> the hypernym; ``"What is {name}?"`` -> the definition.
   The answer span is the occurrence inside ``t``'s sentence.

Every random choice comes from ``numpy.random.default_rng(random_state)``; the same WordNet files
and arguments give the same set (:func:`qa_fingerprint` is its sha256).
"""
from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["QAExample", "read_squad_json", "write_squad_json", "normalize_answer", "exact_match", "f1_score",
           "squad_scores", "build_wordnet_qa", "qa_fingerprint", "WORDNET_QA_TEMPLATES", "WORDNET_QA_RECIPE", "wordnet_qa"]


@dataclass(frozen=True)
class QAExample:
    """One extractive QA example (SQuAD style); ``answer`` is ``context[answer_start:][:len(answer)]``."""

    id: str
    question: str
    context: str
    answer: str
    answer_start: int
    title: str = ""

    def __post_init__(self):
        if not self.question.strip():
            raise ValueError(f"QA example {self.id!r}: empty question")
        if not self.answer:
            raise ValueError(f"QA example {self.id!r}: empty answer")
        end = self.answer_start + len(self.answer)
        if self.answer_start < 0 or self.context[self.answer_start:end] != self.answer:
            raise ValueError(f"QA example {self.id!r}: answer {self.answer!r} is not at character "
                             f"{self.answer_start} of its context")

    @property
    def answer_end(self) -> int:
        """Character index one past the answer."""
        return self.answer_start + len(self.answer)


# --------------------------------------------------------------------------------------------------
# SQuAD JSON
# --------------------------------------------------------------------------------------------------
def read_squad_json(path: str | os.PathLike, *, keep_unanswerable: bool = False) -> List[QAExample]:
    """Examples of a SQuAD 1.1 / 2.0 JSON file (``{"data": [{"title", "paragraphs": [{"context",
    "qas": [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``).

    The first listed answer is the label (SQuAD dev files list several annotators: the first is the
    one the label text embeds). SQuAD 2.0 questions with no answer (``is_impossible``) have no answer
    text to embed: they are dropped unless ``keep_unanswerable`` (then ``ValueError``, since a
    :class:`QAExample` needs an answer). A missing file raises ``FileNotFoundError`` naming it;
    a malformed one ``ValueError`` naming the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD JSON file not found: {path} (a SQuAD 1.1 / 2.0 file such as "
                                "train-v1.1.json or dev-v2.0.json)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"SQuAD file {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError(f"SQuAD file {path}: expected a JSON object with a 'data' list")
    out: List[QAExample] = []
    for article in doc["data"]:
        title = str(article.get("title", ""))
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            for qa in paragraph.get("qas", []):
                qid = str(qa.get("id", ""))
                if not isinstance(context, str) or "question" not in qa:
                    raise ValueError(f"SQuAD file {path}: question {qid!r} lacks a context or question text")
                answers = qa.get("answers") or []
                if qa.get("is_impossible") or not answers:
                    if keep_unanswerable:
                        raise ValueError(f"SQuAD file {path}: question {qid!r} has no answer")
                    continue
                first = answers[0]
                try:
                    out.append(QAExample(qid, str(qa["question"]), context, str(first["text"]),
                                         int(first["answer_start"]), title))
                except (KeyError, TypeError) as exc:
                    raise ValueError(f"SQuAD file {path}: question {qid!r}: malformed answer ({exc})") from None
                except ValueError as exc:
                    raise ValueError(f"SQuAD file {path}: {exc}") from None
    if not out:
        raise ValueError(f"SQuAD file {path} holds no answerable question")
    return out


def write_squad_json(examples: Sequence[QAExample], path: str | os.PathLike, *, version: str = "1.1",
                     **metadata) -> Path:
    """Write ``examples`` as a SQuAD JSON file (one paragraph per example; atomic); extra keyword
    arguments go to the top level (e.g. ``recipe=``)."""
    from data.cache import atomic_save_json
    data = [{"title": ex.title, "paragraphs": [{"context": ex.context, "qas": [
        {"id": ex.id, "question": ex.question, "answers": [{"text": ex.answer, "answer_start": ex.answer_start}]}]}]}
        for ex in examples]
    return atomic_save_json(path, {"version": version, **metadata, "data": data})


# --------------------------------------------------------------------------------------------------
# SQuAD scoring (the official evaluate-v1.1 normalisation)
# --------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, articles (a / an / the) removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    """Token F1 of the normalised strings: ``2 P R / (P + R)`` over the bag-of-tokens overlap."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if not pred or not gold:
        return float(pred == gold)
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def squad_scores(predictions: Sequence[str], truths: Sequence[str]) -> Dict[str, float]:
    """``{"f1": mean F1 in percent, "exact_match": mean EM in percent}`` over paired answers."""
    if len(predictions) != len(truths) or not truths:
        raise ValueError(f"need as many predictions as answers (>= 1), got {len(predictions)} and {len(truths)}")
    f1 = float(np.mean([f1_score(p, t) for p, t in zip(predictions, truths)]))
    em = float(np.mean([exact_match(p, t) for p, t in zip(predictions, truths)]))
    return {"f1": 100.0 * f1, "exact_match": 100.0 * em}


# --------------------------------------------------------------------------------------------------
# WordNet QA
# --------------------------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z][A-Za-z'\- ]*[A-Za-z]$")
WORDNET_QA_TEMPLATES: Tuple[Tuple[str, str, str], ...] = (
    # (template name, question format, which field is the answer)
    ("definition_to_name", "What is {definition}?", "name"),
    ("name_to_hypernym", "What is {name} a kind of?", "hypernym"),
    ("name_to_definition", "What is {name}?", "definition"),
)


@dataclass(frozen=True)
class _Entry:
    wnid: str
    name: str
    hypernym: str
    hypernym_wnid: str
    definition: str

    @property
    def sentence(self) -> str:
        return f"{self.name}, a kind of {self.hypernym}, is {self.definition}."


def _word_count(haystack: str, needle: str) -> int:
    return len(re.findall(r"(?<![A-Za-z0-9])" + re.escape(needle) + r"(?![A-Za-z0-9])", haystack, flags=re.IGNORECASE))


def _eligible(wn) -> Dict[str, _Entry]:
    out: Dict[str, _Entry] = {}
    for wnid in wn.wnids():
        s = wn[wnid]
        if not s.hypernyms:
            continue
        h = wn[s.hypernyms[0]]
        name, hyper = s.name, h.name
        definition = re.sub(r"^\([^)]*\)\s*", "", s.definition.split(";")[0]).strip().rstrip(".").strip()
        n_words = len(definition.split())
        if not (_NAME.match(name) and _NAME.match(hyper)) or len(name.split()) > 3 or len(hyper.split()) > 3:
            continue
        if name.lower() == hyper.lower() or not 4 <= n_words <= 18 or not definition.isascii():
            continue
        if _word_count(definition, name) or _word_count(definition, hyper):
            continue
        out[wnid] = _Entry(wnid, name, hyper, h.wnid, definition)
    return out


def _distractors(wn, target: _Entry, pool: Dict[str, _Entry], pool_ids: List[str], k: int,
                 rng: np.random.Generator) -> List[_Entry]:
    """Up to ``k`` pool entries with a hypernym and name not yet in the context: cousins, then
    siblings, then random pool members (see the module recipe)."""
    parent = wn[target.hypernym_wnid]
    cousins = sorted({c for g in parent.hypernyms for aunt in wn[g].hyponyms if aunt != parent.wnid
                      for c in wn[aunt].hyponyms})
    siblings = sorted(set(parent.hyponyms) - {target.wnid})
    candidates = [list(rng.permutation(cousins)), list(rng.permutation(siblings)),
                  [pool_ids[i] for i in rng.choice(len(pool_ids), size=min(len(pool_ids), 8 * k), replace=False)]]
    chosen: List[_Entry] = []
    names, hypers = {target.name.lower()}, {target.hypernym.lower()}
    for group in candidates:
        for wnid in group:
            e = pool.get(wnid)
            if e is None or e.name.lower() in names or e.hypernym.lower() in hypers:
                continue
            chosen.append(e)
            names.add(e.name.lower())
            hypers.add(e.hypernym.lower())
            if len(chosen) == k:
                return chosen
    return chosen


def _make_example(target: _Entry, others: List[_Entry], rng: np.random.Generator, qid: str) -> Optional[QAExample]:
    entries = [target, *others]
    order = rng.permutation(len(entries))
    sentences = [entries[i].sentence for i in order]
    context = " ".join(sentences)
    offset = 0
    for i in order:
        if entries[i] is target:
            break
        offset += len(entries[i].sentence) + 1
    own = target.sentence
    fields = {"name": target.name, "hypernym": target.hypernym, "definition": target.definition}
    usable = [t for t in WORDNET_QA_TEMPLATES if _word_count(context, fields[t[2]]) == 1]
    if not usable:
        return None
    template, fmt, field_name = usable[int(rng.integers(len(usable)))]
    answer = fields[field_name]
    match = re.search(r"(?<![A-Za-z0-9])" + re.escape(answer) + r"(?![A-Za-z0-9])", own)
    if match is None:  # pragma: no cover - the sentence always holds its own fields
        return None
    question = fmt.format(**fields)
    return QAExample(qid, question, context, answer, offset + match.start(), title=f"{target.wnid}:{template}")


def build_wordnet_qa(wn, *, n_train: int = 2000, n_test: int = 500, context_size: int = 3,
                     test_fraction: float = 0.2, random_state: int = 0) -> Tuple[List[QAExample], List[QAExample]]:
    """The WordNet QA train / test examples (recipe: module docstring). ``wn`` is a
    :class:`mll.wordnet.WordNet`; ``ValueError`` when a pool cannot supply the requested size."""
    if n_train < 1 or n_test < 1 or context_size < 1 or not 0 < test_fraction < 1:
        raise ValueError(f"need n_train, n_test, context_size >= 1 and 0 < test_fraction < 1, got "
                         f"{n_train}, {n_test}, {context_size}, {test_fraction}")
    rng = np.random.default_rng(random_state)
    eligible = _eligible(wn)
    ids = sorted(eligible)
    perm = rng.permutation(len(ids))
    n_test_pool = int(round(test_fraction * len(ids)))
    pools = {"test": [ids[i] for i in sorted(perm[:n_test_pool])], "train": [ids[i] for i in sorted(perm[n_test_pool:])]}
    out: Dict[str, List[QAExample]] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        pool_ids = pools[split]
        pool = {w: eligible[w] for w in pool_ids}
        examples: List[QAExample] = []
        for idx in rng.permutation(len(pool_ids)):
            target = pool[pool_ids[idx]]
            others = _distractors(wn, target, pool, pool_ids, context_size - 1, rng)
            if len(others) < context_size - 1:
                continue
            ex = _make_example(target, others, rng, f"wnqa-{split}-{len(examples):05d}")
            if ex is not None:
                examples.append(ex)
                if len(examples) == n:
                    break
        if len(examples) < n:
            raise ValueError(f"WordNet QA: the {split} pool ({len(pool_ids)} synsets) gave only {len(examples)} "
                             f"examples, {n} requested")
        out[split] = examples
    return out["train"], out["test"]


def qa_fingerprint(examples: Sequence[QAExample]) -> str:
    """sha256 of the examples' fields (order included): identifies a built set."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(asdict(ex), sort_keys=True).encode() + b"\n")
    return h.hexdigest()


#: the recipe of the committed offline benchmark (``offline_tqa``): arguments of :func:`build_wordnet_qa`
WORDNET_QA_RECIPE = {"n_train": 2000, "n_test": 500, "context_size": 3, "test_fraction": 0.2, "random_state": 0}


def wordnet_qa(wordnet_dir: str | os.PathLike | None = None, **overrides) -> Tuple[List[QAExample], List[QAExample]]:
    """The WordNet QA (train, test) of :data:`WORDNET_QA_RECIPE` (``overrides`` change its arguments),
    from the WordNet files in ``wordnet_dir`` (default ``$WORDNET_DIR`` or ``/usr/share/wordnet``)."""
    from mll.wordnet import DEFAULT_WORDNET_DIR
    unknown = set(overrides) - set(WORDNET_QA_RECIPE)
    if unknown:
        raise ValueError(f"unknown WordNet QA recipe argument(s) {sorted(unknown)}; known: {sorted(WORDNET_QA_RECIPE)}")
    root = Path(wordnet_dir or os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR).resolve()
    train, test = _cached_wordnet_qa(str(root), tuple(sorted({**WORDNET_QA_RECIPE, **overrides}.items())))
    return list(train), list(test)


@functools.lru_cache(maxsize=2)
def _cached_wordnet_qa(root: str, recipe: tuple) -> Tuple[Tuple[QAExample, ...], Tuple[QAExample, ...]]:
    from mll.wordnet import load_wordnet
    train, test = build_wordnet_qa(load_wordnet(root), **dict(recipe))
    return tuple(train), tuple(test)
