"""A minimal reader of the WordNet 3.0 noun database (the ``data.noun`` / ``index.noun`` files).

MLL (Tan et al., ICML 2025, Sec. 4.1) builds its semantic graph from WordNet noun synsets: one node
per synset, edges from the hypernym/hyponym relations, the caption of a node being
``"{synset name} which is {synset definition}"``. The files come from the Debian package
``wordnet-base`` (``/usr/share/wordnet``); their format is documented in ``wndb(5WN)``::

    data.noun:  offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt
                [ptr_symbol offset pos source/target ...] | gloss
    index.noun: lemma pos synset_cnt p_cnt [ptr_symbol ...] sense_cnt tagsense_cnt offset [offset ...]

``w_cnt`` is two hexadecimal digits, ``p_cnt`` three decimal digits. Synsets are identified by their
ImageNet-style *wnid* ``"n%08d" % offset``. The folder is ``wordnet_dir=`` or ``$WORDNET_DIR`` or
``/usr/share/wordnet``; no NLTK download is involved.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np

__all__ = ["Synset", "WordNet", "load_wordnet", "DEFAULT_WORDNET_DIR"]

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")

#: pointer symbols (wndb(5WN)) that we keep: hypernym / instance hypernym, hyponym / instance hyponym
_HYPERNYM_SYMBOLS = {"@", "@i"}
_HYPONYM_SYMBOLS = {"~", "~i"}


@dataclass(frozen=True)
class Synset:
    """One noun synset. ``lemmas`` keep WordNet's spelling with underscores replaced by spaces."""

    wnid: str
    lemmas: Tuple[str, ...]
    definition: str
    hypernyms: Tuple[str, ...]
    hyponyms: Tuple[str, ...]

    @property
    def name(self) -> str:
        """The synset name used in captions: its first lemma."""
        return self.lemmas[0]

    @property
    def caption(self) -> str:
        """MLL's node caption ``"{synset name} which is {synset definition}"`` (Sec. 4.1)."""
        return f"{self.name} which is {self.definition}"


def _wnid(offset: str) -> str:
    return f"n{int(offset):08d}"


def _definition(gloss: str) -> str:
    """The definition part of a gloss: the text before the first quoted example (``; "...``)."""
    gloss = gloss.strip()
    cut = gloss.find('"')
    if cut >= 0:
        gloss = gloss[:cut]
    return gloss.strip().rstrip(";").strip()


def _parse_data_line(line: str) -> Synset:
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, w_cnt = fields[0], int(fields[3], 16)
    words = fields[4:4 + 2 * w_cnt:2]
    pos = 4 + 2 * w_cnt
    p_cnt = int(fields[pos])
    hyper, hypo = [], []
    for i in range(p_cnt):
        symbol, target, target_pos = fields[pos + 1 + 4 * i: pos + 4 + 4 * i]
        if target_pos != "n":
            continue
        if symbol in _HYPERNYM_SYMBOLS:
            hyper.append(_wnid(target))
        elif symbol in _HYPONYM_SYMBOLS:
            hypo.append(_wnid(target))
    lemmas = tuple(w.replace("_", " ") for w in words)
    return Synset(_wnid(offset), lemmas, _definition(gloss), tuple(hyper), tuple(hypo))


class WordNet:
    """The noun synsets of WordNet 3.0, indexed by wnid, with a lemma index.

    >>> wn = load_wordnet()
    >>> wn["n02084071"].name, wn["n02084071"].hypernyms[0]
    ('dog', 'n02083346')
    """

    def __init__(self, wordnet_dir: str | os.PathLike | None = None):
        root = Path(wordnet_dir or os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR)
        data, index = root / "data.noun", root / "index.noun"
        for path in (data, index):
            if not path.is_file():
                raise FileNotFoundError(f"WordNet file {path} is missing: install the Debian package "
                                        "'wordnet-base' or set WORDNET_DIR to a folder holding data.noun/index.noun")
        self.root = root
        self._synsets: Dict[str, Synset] = {}
        with open(data, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header
                    continue
                s = _parse_data_line(line)
                self._synsets[s.wnid] = s
        self._index: Dict[str, Tuple[str, ...]] = {}
        with open(index, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                fields = line.split()
                n_syn = int(fields[2])
                self._index[fields[0]] = tuple(_wnid(o) for o in fields[-n_syn:])

    # -- lookup ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._synsets)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._synsets

    def __getitem__(self, wnid: str) -> Synset:
        try:
            return self._synsets[wnid]
        except KeyError:
            raise KeyError(f"{wnid!r} is not a WordNet 3.0 noun synset id (expected 'n' + 8 digits)") from None

    def wnids(self) -> List[str]:
        return list(self._synsets)

    def lookup(self, word: str) -> Tuple[str, ...]:
        """Noun synsets of ``word``, most frequent sense first (``()`` when the word is unknown).

        Spaces/hyphen variants are normalised the way ``index.noun`` spells lemmas (lower case,
        underscores)."""
        key = word.strip().lower().replace(" ", "_")
        return self._index.get(key, ())

    # -- structure ------------------------------------------------------------------------------
    def _closure(self, wnid: str, relation: str) -> List[str]:
        """Transitive closure of ``relation`` ("hypernyms" / "hyponyms") from ``wnid``, breadth first
        (nearest first), each synset once, ``wnid`` itself excluded."""
        seen, order, queue = {wnid}, [], deque(getattr(self[wnid], relation))
        while queue:
            w = queue.popleft()
            if w in seen:
                continue
            seen.add(w)
            order.append(w)
            queue.extend(getattr(self[w], relation))
        return order

    def ancestors(self, wnid: str) -> List[str]:
        """All hypernyms (transitively), nearest first, each once."""
        return self._closure(wnid, "hypernyms")

    def descendants(self, wnid: str) -> List[str]:
        """All hyponyms (transitively), nearest first, each once."""
        return self._closure(wnid, "hyponyms")

    def neighbourhood(self, wnid: str, n: int, *, random_state: int = 0) -> List[str]:
        """``n`` semantic neighbours of ``wnid`` to serve as zero-shot distractors.

        Breadth-first search over the undirected hypernym/hyponym graph, skipping the synset's own
        ancestors and descendants (an image of a beagle is not *wrong* when called a dog), so the
        neighbours are siblings first, then cousins, and so on. When the last BFS level has more
        candidates than needed, a subset is drawn with a generator seeded by ``random_state`` and
        the synset offset, so the result depends only on ``(wnid, n, random_state)``: labels of a
        node never change when other nodes enter the graph.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        excluded = {wnid, *self.ancestors(wnid), *self.descendants(wnid)}
        rng = np.random.default_rng([int(random_state), int(wnid[1:])])
        chosen: List[str] = []
        seen = set(excluded)
        frontier = [wnid]
        visited = {wnid}
        while frontier and len(chosen) < n:
            nxt: List[str] = []
            for w in frontier:
                s = self[w]
                for u in (*s.hypernyms, *s.hyponyms):
                    if u not in visited:
                        visited.add(u)
                        nxt.append(u)
            level = sorted(u for u in nxt if u not in seen)
            seen.update(level)
            need = n - len(chosen)
            if len(level) > need:
                level = sorted(rng.choice(level, size=need, replace=False).tolist())
            chosen.extend(level)
            frontier = nxt
        return chosen

    def edges(self, wnids: Iterable[str]) -> List[Tuple[str, str]]:
        """Hypernym -> hyponym edges among ``wnids`` (both ends in the set), sorted."""
        members = set(wnids)
        return sorted((p, c) for c in members for p in self[c].hypernyms if p in members)


@lru_cache(maxsize=4)
def _load(root: str) -> WordNet:
    return WordNet(root)


def load_wordnet(wordnet_dir: str | os.PathLike | None = None) -> WordNet:
    """A process-wide cached :class:`WordNet` for ``wordnet_dir`` (default: ``$WORDNET_DIR`` or
    ``/usr/share/wordnet``)."""
    root = Path(wordnet_dir or os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR)
    return _load(str(root.resolve()))
