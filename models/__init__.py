"""Model registry, feature extraction and the cache-filling pipeline.

>>> import models
>>> models.list_models("offline")[:7]        # + 13 intermediate-layer candidates ("dinov2_s@block8", ...)
['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2', 'dinov2_s', 'ocr_det', 'ocr_rec', 'ocr_cls']
>>> m = models.create_model("efficientnet_lite0")          # doctest: +SKIP
>>> feats, logits = m.features_and_source_logits(batch)    # doctest: +SKIP

See ``docs/models.md`` for every entry, its weights and its feature definition.
"""
from .base import FeatureModel, HookedFeatureModel, resolve_device
from .registry import (GROUPS, ModelEntry, create_model, create_trainable, list_models, model_info, register_model,
                       target_allowed)
from .weights import WEIGHTS_ENV
from .extraction import extract
from .pipeline import CacheMismatchError, extract_to_cache, prepare_dataset

# Importing the zoo modules registers their entries (order = listing order).
from . import torchvision_cnn  # noqa: E402,F401  (cnn)
from . import vit_zoo  # noqa: E402,F401  (vit)
from . import captioning  # noqa: E402,F401  (caption)
from . import efficientnet_lite, onnx_zoo  # noqa: E402,F401  (offline)
from . import intermediate  # noqa: E402,F401  (offline: intermediate-layer candidates)
from . import offline_trained  # noqa: E402,F401  (offline_trained: networks pre-trained here)

__all__ = ["FeatureModel", "HookedFeatureModel", "GROUPS", "ModelEntry", "WEIGHTS_ENV", "create_model",
           "create_trainable", "extract", "extract_to_cache", "prepare_dataset", "CacheMismatchError", "list_models", "model_info", "register_model", "resolve_device", "target_allowed"]
