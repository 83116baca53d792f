"""The MLL method as one configuration object, with named variants (see docs/mll.md, "Variants").

:class:`MLLConfig` names one choice per piece of the method, each a key of that piece's registry:

=============  ==================================  =======================================  ================================
field          registry                            ``"released"`` (default)                  ``"reconstruction"``
=============  ==================================  =======================================  ================================
graph          ``mll.graph.GRAPH_CONSTRUCTIONS``   ``"released"``: lemma-sharing synsets +   ``"reconstruction"``: class
                                                   direct hyponyms, 25 images per source     synsets + all ancestors
labeling       ``mll.labeling.LABELING_PROTOCOLS`` ``"definitions"``: every image vs the     ``"candidates"``: node vs 20
                                                   nodes' definitions; TP/FP/P on V_S        WordNet neighbours' names
transfer       ``mll.selection.TRANSFERS``         ``"released"``: 100 cos, top-5            ``"reconstruction"``: clipped,
                                                                                             rows normalised
class_score    ``mll.selection.CLASS_SCORES``      ``"f1"``: 2TP / (2TP + FP + P)            ``"accuracy"``: sum_v T a(v)
eq7            ``mll.selection.EQ7_FORMS``         ``"others"``: mean over c' != c           ``"all"``: mean over all c'
weights        ``mll.reuse.REUSE_WEIGHTS``         ``"inverse_entropy"``: 1 / H_2            ``"entropy"``: H / sum H
prompt         :data:`PROMPTS`                     ``"classname"``: the bare class name      ``"templates"``: the model's own
softmax_scale  --                                  100 (softmax of 100 cos)                  ``None``: the model's scale
=============  ==================================  =======================================  ================================

``"paper"`` prompts are "a photo of {class}." (Sec. 5.2). :data:`METHOD_VARIANTS` holds the two
named variants; :func:`method_config` builds one with overrides.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, List, Optional

from common import Registry

from .graph import GRAPH_CONSTRUCTIONS
from .labeling import LABELING_PROTOCOLS, create_labeling_protocol
from .reuse import REUSE_WEIGHTS
from .selection import CLASS_SCORES, DEFAULT_ALPHA, DEFAULT_K_NODES, EQ7_FORMS, TRANSFERS

__all__ = ["MLLConfig", "METHOD_VARIANTS", "method_config", "PROMPTS", "class_prompts", "PIECES"]

#: target-class prompts: (vlm, class name) -> prompts of that class
PROMPTS: Registry[Callable[[object, str], List[str]]] = Registry("prompt")
PROMPTS.add("classname", lambda vlm, c: [c])
PROMPTS.add("paper", lambda vlm, c: [f"a photo of {c}."])
PROMPTS.add("templates", lambda vlm, c: vlm.prompts_for(c))


def class_prompts(vlm, classnames, prompt: str = "classname") -> List[List[str]]:
    """The prompts of each class under :data:`PROMPTS` ``prompt``."""
    return [PROMPTS[prompt](vlm, c) for c in classnames]


@dataclass(frozen=True)
class MLLConfig:
    """One choice per piece of MLL (module docstring); validated against the registries."""

    graph: str = "released"
    labeling: str = "definitions"
    transfer: str = "released"
    class_score: str = "f1"
    eq7: str = "others"
    weights: str = "inverse_entropy"
    prompt: str = "classname"
    softmax_scale: Optional[float] = 100.0
    k_nodes: int = DEFAULT_K_NODES
    alpha: float = DEFAULT_ALPHA
    n_distractors: int = 20          # candidate protocol only

    def __post_init__(self):
        for name, registry in (("graph", GRAPH_CONSTRUCTIONS), ("labeling", LABELING_PROTOCOLS),
                               ("transfer", TRANSFERS), ("class_score", CLASS_SCORES),
                               ("weights", REUSE_WEIGHTS), ("prompt", PROMPTS)):
            value = getattr(self, name)
            if value not in registry:
                raise ValueError(f"MLLConfig.{name}={value!r} is unknown; available: {sorted(registry)}")
        if self.eq7 not in EQ7_FORMS:
            raise ValueError(f"MLLConfig.eq7={self.eq7!r} is unknown; available: {list(EQ7_FORMS)}")
        if self.softmax_scale is not None and not self.softmax_scale > 0:
            raise ValueError(f"softmax_scale must be > 0 or None, got {self.softmax_scale}")
        if self.k_nodes < 1:
            raise ValueError(f"k_nodes must be >= 1, got {self.k_nodes}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.n_distractors < 1:
            raise ValueError(f"n_distractors must be >= 1, got {self.n_distractors}")

    def protocol(self, random_state: int = 0):
        """The labeling protocol object of ``labeling``."""
        if self.labeling == "candidates":
            return create_labeling_protocol("candidates", n_distractors=self.n_distractors, random_state=random_state)
        return create_labeling_protocol(self.labeling)

    def replace(self, **changes) -> "MLLConfig":
        return dataclasses.replace(self, **changes)


METHOD_VARIANTS: Registry[MLLConfig] = Registry("MLL method variant")
METHOD_VARIANTS.add("released", MLLConfig())
METHOD_VARIANTS.add("reconstruction", MLLConfig(graph="reconstruction", labeling="candidates",
                                                transfer="reconstruction", class_score="accuracy", eq7="all",
                                                weights="entropy", prompt="templates", softmax_scale=None))

#: the pieces switched one at a time in the departure measurements: piece -> config fields
PIECES = {"graph": ("graph",), "labeling": ("labeling",), "transfer": ("transfer",),
          "class score": ("class_score",), "Eq. 7": ("eq7",), "reuse weights": ("weights",),
          "prompt": ("prompt", "softmax_scale")}


def method_config(variant: str = "released", **overrides) -> MLLConfig:
    """``METHOD_VARIANTS[variant]`` with the non-None ``overrides`` (field names of MLLConfig)."""
    base = METHOD_VARIANTS[variant]
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(MLLConfig)})
    if unknown:
        raise ValueError(f"unknown MLLConfig fields {unknown}")
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})
