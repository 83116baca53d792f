"""Model Label Learning (MLL; Tan, Zhou, Li & Guo, "Vision-Language Model Selection and Reuse for
Downstream Adaptation", ICML 2025), reproduced.

* :mod:`mll.vlm` — the VLM interface, registry/factory (49 open_clip models from local weights; nine
  offline ConSE stand-ins built from packaged ImageNet classifiers + MiniLM);
* :mod:`mll.wordnet` / :mod:`mll.graph` — the semantic graph of WordNet noun synsets with sample images;
* :mod:`mll.labeling` — model labels (zero-shot performance per node), the growable :class:`ModelHub`;
* :mod:`mll.selection` — class descriptions, transfer matrix, predicted per-class performance, reuse metric;
* :mod:`mll.reuse` — per-class top-k models and the entropy-weighted ensemble;
* :mod:`mll.config` — :class:`MLLConfig` and the named variants ("released", the default, and
  "reconstruction");
* :mod:`mll.benchmark` — INB / ModelGPT / MLL on target tasks, hub growth, ablations;
* :mod:`mll.baselines` — INB and ModelGPT (LOVM) (separate owner).

See ``docs/mll.md``.
"""
from .graph import (GRAPH_CONSTRUCTIONS, DatasetSource, ImageFolderSource, ImageRef, SampleSource, SemanticGraph,
                    create_sample_source, offline_sample_source)
from .labeling import (LABELING_PROTOCOLS, DefinitionProtocol, LabelingProtocol, ModelHub, definition_counts,
                       label_nodes, node_candidates)
from .reuse import (REUSE_WEIGHTS, ensemble_confidence, ensemble_predict, entropy_weights, inverse_entropy_weights,
                    top_k_models)
from .selection import (CLASS_SCORES, TRANSFERS, SelectionResult, class_scores, embed_captions,
                        generate_class_descriptions, load_class_captions, reuse_metric, select_models,
                        transfer_matrix)
from .config import METHOD_VARIANTS, PROMPTS, MLLConfig, method_config
from .vlm import (VLM, ConSEVLM, OpenCLIPVLM, cached_image_embeddings, create_vlm, list_vlms,
                  openclip_hub, register_vlm)
from .wordnet import Synset, WordNet, load_wordnet
from . import aligned  # noqa: E402,F401  (registers the aligned offline models, mll/aligned.py)

__all__ = [
    "VLM", "ConSEVLM", "OpenCLIPVLM", "create_vlm", "list_vlms", "register_vlm", "openclip_hub",
    "cached_image_embeddings", "WordNet", "Synset", "load_wordnet", "SemanticGraph", "SampleSource",
    "ImageFolderSource", "DatasetSource", "ImageRef", "create_sample_source", "offline_sample_source",
    "GRAPH_CONSTRUCTIONS", "LabelingProtocol", "DefinitionProtocol", "LABELING_PROTOCOLS", "ModelHub",
    "label_nodes", "node_candidates", "definition_counts", "generate_class_descriptions", "load_class_captions",
    "embed_captions", "transfer_matrix", "TRANSFERS", "class_scores", "CLASS_SCORES", "reuse_metric",
    "select_models", "SelectionResult", "top_k_models", "entropy_weights", "inverse_entropy_weights",
    "REUSE_WEIGHTS", "ensemble_confidence", "ensemble_predict", "MLLConfig", "METHOD_VARIANTS",
    "method_config", "PROMPTS",
]
