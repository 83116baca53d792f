"""Full-scale fused vision-language candidates loaded by ``transformers`` from local folders.

A fused candidate reads image AND text (question / expression) together, so its feature is the
model's own fused representation, not ``tasks.fusion``:

============== ======================================== ===================================================
name           transformers class (folder under weights) feature X (N, D)
============== ======================================== ===================================================
``vilt_vqa``   ``ViltForQuestionAnswering``              ``vilt(...).pooler_output``: the pooled [CLS] of the
               (``vilt_vqa/``, e.g. dandelin/vilt-b32-   last layer over question + image patches, the input
               finetuned-vqa saved with save_pretrained)  of the VQA classifier (768-d)
``blip_vqa``   ``BlipForQuestionAnswering``              the question encoder's last hidden states (text
               (``blip_vqa/``, e.g. Salesforce/blip-vqa-  tokens cross-attending to the image), mean over
               base)                                      real tokens (padding masked): what the answer
                                                          decoder attends to (768-d)
``vilt_itm``   ``ViltForImageAndTextRetrieval``          pooled [CLS] of image + expression (the fused
               (``vilt_itm/``, e.g. dandelin/vilt-b32-   image-text representation of its grounding score),
               finetuned-coco)                            for REC
============== ======================================== ===================================================

Each folder holds the ``save_pretrained`` model and its processor (``AutoProcessor``). A missing
folder raises ``FileNotFoundError`` naming the path (``models.weights.require_weights``). Texts are
truncated to the model's maximum text length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np
import torch

from common import Registry

__all__ = ["FusedFamily", "FUSED_MODELS", "FusedModel", "load_fused", "fused_features", "extract_fused",
           "extract_candidates"]


@dataclass(frozen=True)
class FusedFamily:
    name: str
    model_class: str
    feature: Callable          # (model, encoded batch) -> (B, D) tensor
    what: str


def _vilt_pooled(model, enc) -> torch.Tensor:
    core = model.vilt
    return core(**enc).pooler_output


def _blip_question(model, enc) -> torch.Tensor:
    vision = model.vision_model(pixel_values=enc["pixel_values"])[0]
    att = torch.ones(vision.shape[:-1], dtype=torch.long, device=vision.device)
    hidden = model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                encoder_hidden_states=vision, encoder_attention_mask=att)[0]
    w = enc["attention_mask"].to(hidden.dtype).unsqueeze(-1)
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)


FUSED_MODELS: Registry[FusedFamily] = Registry("fused vision-language model")
FUSED_MODELS.add("vilt_vqa", FusedFamily("vilt_vqa", "ViltForQuestionAnswering", _vilt_pooled,
                                         "a ViLT VQA model + processor saved with save_pretrained"))
FUSED_MODELS.add("blip_vqa", FusedFamily("blip_vqa", "BlipForQuestionAnswering", _blip_question,
                                         "a BLIP VQA model + processor saved with save_pretrained"))
FUSED_MODELS.add("vilt_itm", FusedFamily("vilt_itm", "ViltForImageAndTextRetrieval", _vilt_pooled,
                                         "a ViLT image-text matching model + processor saved with save_pretrained"))


class FusedModel:
    """``features(images, texts)`` -> (B, D) float32 numpy of one family (module docstring)."""

    def __init__(self, family: FusedFamily, folder, device: str = "cpu"):
        import transformers

        self.family, self.name, self.device = family, family.name, torch.device(device)
        self.processor = transformers.AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        cls = getattr(transformers, family.model_class)
        self.model = cls.from_pretrained(str(folder), local_files_only=True).to(self.device).eval()
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", None)
                              or getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", 40))

    @torch.no_grad()
    def features(self, images: List, texts: Sequence[str]) -> np.ndarray:
        if len(images) != len(texts) or not texts:
            raise ValueError(f"{self.name}: {len(images)} images but {len(texts)} texts")
        enc = self.processor(images=list(images), text=list(texts), return_tensors="pt", padding=True,
                             truncation=True, max_length=self.max_length)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        return self.family.feature(self.model, enc).float().cpu().numpy()

    def record(self) -> dict:
        return {"family": self.name, "class": self.family.model_class,
                "config_sha": __import__("data.fingerprint", fromlist=["sha256_json"]).sha256_json(self.model.config.to_dict())}


def load_fused(name: str, *, weights_dir=None, device: str = "cpu") -> FusedModel:
    """Build the fused candidate ``name`` from ``{weights_dir or $MODEL_SELECTOR_WEIGHTS}/{name}/``."""
    from models.weights import require_weights

    family = FUSED_MODELS[name]
    folder = require_weights(weights_dir, name, model=name, what=family.what, is_dir=True)
    return FusedModel(family, folder, device)


def fused_features(model: FusedModel, ds, texts: Sequence[str], *, batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """(N, D) fused features of every sample of ``ds`` (image of the sample + its text)."""
    from tqdm.auto import tqdm

    from .images import as_pil

    out = []
    for s in tqdm(range(0, len(ds), batch_size), desc=model.name, disable=not progress, leave=False):
        rows = range(s, min(s + batch_size, len(ds)))
        out.append(model.features([as_pil(ds.images[ds.image_index[i]]) for i in rows], [texts[i] for i in rows]))
    return np.concatenate(out).astype(np.float32)


def extract_fused(cache_dir, key: str, ds, name: str, texts: Sequence[str], *, weights_dir=None, device=None,
                  progress: bool = False, log=print) -> str:
    """``features/{key}/{name}.npy`` of fused candidate ``name`` (cached; "extracted" | "skipped")."""
    from data.fingerprint import sha256_json

    from .pipeline import write_features

    model = load_fused(name, weights_dir=weights_dir, device=device or "cpu")
    made_from = {"candidate": name, "fused": model.record(), "texts_sha256": sha256_json(list(texts))}
    _, status = write_features(cache_dir, key, name, ds, made_from,
                               lambda: fused_features(model, ds, texts, progress=progress), log=log)
    return status


def extract_candidates(cache_dir, key: str, ds, candidates: Sequence[str], texts: Sequence[str],
                       fuse: Callable[[str], tuple], *, weights_dir=None, device=None, progress: bool = False,
                       log=print) -> dict:
    """Features of every candidate of a task on ``ds``: a registered transformers model that reads
    image + text itself (:data:`FUSED_MODELS`) through :func:`extract_fused` with the per-sample
    ``texts``; any other (``"backbone+encoder"``) candidate through ``fuse(candidate) -> (made_from,
    compute)`` and :func:`tasks.pipeline.write_features`. Returns ``{candidate: "extracted" | "skipped"}``."""
    import time

    from .pipeline import write_features

    status = {}
    for cand in candidates:
        t0 = time.perf_counter()
        if cand in FUSED_MODELS:
            status[cand] = extract_fused(cache_dir, key, ds, cand, texts, weights_dir=weights_dir, device=device,
                                         progress=progress, log=log)
        else:
            made_from, compute = fuse(cand)
            _, status[cand] = write_features(cache_dir, key, cand, ds, made_from, compute, log=log)
        log(f"[{status[cand]}] {key}/{cand} ({time.perf_counter() - t0:.1f} s)")
    return status
