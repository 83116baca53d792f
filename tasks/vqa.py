"""Visual question answering (EMMS: "the same pipeline as the categorization task").

* Label (F-label): the answer string; the answer vocabulary (C answers) is embedded once per
  answer with every text encoder (``label_embeddings/{dataset}/{encoder}.npy``, (C, E), the bare
  answer, no prompt) and gathered per sample by the answer id: label source ``"answers"``.
  ``labels/{dataset}.npy`` holds the answer ids, so every classification metric that needs no
  source head applies (LogME, H-score, NLEEP, SFDA, ...; LEEP / NCE need a source head, which a
  fused candidate does not have).
* Candidate ``"{backbone}+{question encoder}"``: a registered image backbone (``models``) and a
  question encoder (``tasks.text``). Feature X (N, D): ``tasks.fusion.bilinear_fusion`` of the
  backbone's pooled feature of the sample's image (``tasks.images``, "pooled", at IMAGE_RESOLUTION:
  the 64-px easy-VQA scenes through the model's preprocess, then shrunk to 70 x 70 (a multiple of
  DINOv2's 14-px patches); the OCR models keep their 48-px-high inputs) and the
  question's embedding (mean-pooled over real tokens for the transformer encoders, no padding).
* Ground truth (``finetune_vqa.py``, :mod:`tasks.heads`), answer accuracy (percent) on the test
  split's questions, 80% fit / 20% validation of the train split, lr chosen on validation:
  ``"finetuned"`` (the committed table): the image backbone and an :class:`tasks.heads.AnswerHead`
  trained end to end on the same 70-px inputs, the question embedding frozen; ``"head"`` (a cheap
  yardstick): the head on the frozen cached features.

Full-scale fused candidates (``tasks.fused_models``: ``vilt_vqa``, ``blip_vqa``, loaded by
transformers from local folders) are extracted by the same :func:`extract` (their own fused feature).

Offline set: ``easyvqa_vqa``; full-scale loaders ``vqav2``, ``cocoqa``, ``clevr`` (``tasks.vqa_data``).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence


from data.fingerprint import array_sha256
from data.registry import DatasetSpec
from Label_embedding.offline_encoders import OFFLINE_LABEL_ENCODERS
from evaluation.inputs import LabelSource
from evaluation.runner import TaskSpec

from .base import TaskPlugin, metrics_for, register_task
from .fused_models import extract_candidates
from .fusion import FUSION_VERSION, bilinear_fusion
from .images import image_array_path
from .pipeline import candidate_inputs, cache_key, encoder_arg, file_record, write_labels
from .vqa_data import build_easyvqa, full_scale_specs

__all__ = ["PLUGIN", "BACKBONES", "QUESTION_ENCODERS", "CANDIDATES", "FINETUNED_CANDIDATES", "extract", "ground_truth",
           "GT_PROTOCOLS", "IMAGE_RESOLUTION"]

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2", "dinov2_s", "ocr_det", "ocr_rec", "ocr_cls")
QUESTION_ENCODERS = ("minilm", "bow")
CANDIDATES = tuple(f"{b}+{q}" for b in BACKBONES for q in QUESTION_ENCODERS)
DATASET = "easyvqa_vqa"

IMAGE_RESOLUTION = {"resolution": 70, "multiple": 14}      # shared by extraction and fine-tuning
#: ocr_rec's fixed 48 x 320 input costs ~10x the others' 70 x 70 per training image on these CPUs
FINETUNED_CANDIDATES = tuple(c for c in CANDIDATES if not c.startswith("ocr_rec+"))

_HEAD = "AnswerHead(hidden=256)"
_PROBE = {"lrs": [1e-3, 3e-3], "epochs": 30, "batch_size": 64}
GT_PROTOCOLS = {
    "finetuned": {"head": _HEAD, "trained": "LP-FT: the head on frozen features (probe), then image backbone + head "
                  "end to end; question embedding frozen", **IMAGE_RESOLUTION, "val_fraction": 0.2, "probe": _PROBE,
                  "lrs": [1e-5, 1e-4, 1e-3], "head_lr_scale": 1.0, "freeze_bn_stats": True, "epochs": 3, "batch_size": 32,
                  "weight_decay": 1e-4, "seed": 0,
                  "standardise": "backbone output: fixed per-column mean/std of the pre-trained fit-row features"},
    "head": {"head": f"{_HEAD} on frozen image feature + frozen question embedding", **IMAGE_RESOLUTION,
             "val_fraction": 0.2, **_PROBE, "weight_decay": 1e-4, "seed": 0,
             "standardise": "per-column mean/std of the fit rows"},
}

_PROVIDES = frozenset({"features", "labels", "label_embeddings"})

PLUGIN = register_task(TaskPlugin(
    name="vqa",
    specs=(TaskSpec(name="vqa", label_source="answers", provides=_PROVIDES, default_metrics=metrics_for(_PROVIDES),
                    default_group="offline_vqa", default_encoders=OFFLINE_LABEL_ENCODERS),),
    evaluate_script="evaluate_metric_cls.py",
    label_text={"vqa": "the answer string (bare, no prompt), one embedding per answer, gathered per sample"},
    measure="accuracy",
    description="visual question answering: answer ids over a vocabulary, fused image-question features",
    label_sources=(LabelSource(name="answers", path=lambda layout, dataset, encoder: layout.label_embedding(dataset, encoder),
                               needs_labels=True, description="(C, E) answer-string embeddings indexed by the answer ids"),),
    datasets=(DatasetSpec(name=DATASET, kind="vqa", build=build_easyvqa, splits=("train", "test"),
                          description="seeded subset of easy-VQA 1.0 questions (PyPI easy-vqa), 13 answers"),)
             + full_scale_specs(),
    candidates={c: "pooled image feature of {} fused with the {} question embedding".format(*c.split("+"))
                for c in CANDIDATES},
))


def _features_of(cache_dir, key, ds, candidate, *, device, progress, log):
    return candidate_inputs(cache_dir, key, ds, candidate, "pooled", ds.questions, "question", **IMAGE_RESOLUTION,
                            device=device, progress=progress, log=log)


def extract(candidates: Sequence[str] = CANDIDATES, *, cache_dir, dataset: str = DATASET, split: str = "train",
            encoders: Sequence[str] = OFFLINE_LABEL_ENCODERS, data_root=None, device: Optional[str] = None,
            progress: bool = True, log: Callable[[str], None] = print, weights_dir=None,
            **dataset_options) -> Dict[str, str]:
    """Write labels, answer embeddings (every encoder) and the fused features of every candidate
    for ``dataset``/``split`` into the cache; returns ``{candidate: "extracted" | "skipped"}``."""
    import data
    from Label_embedding.embed import write_label_embeddings

    ds = data.get_dataset(dataset, split=split, root=data_root, **dataset_options)
    key = cache_key(dataset, split)
    write_labels(cache_dir, key, ds, ds.targets, log=log)
    for enc in encoders:
        write_label_embeddings(key, encoder_arg(enc), cache_dir, classnames=ds.classes, templates="name",
                               readable=False, cache_name=enc, progress=False, log=log)

    def fuse(cand):
        img, q = _features_of(cache_dir, key, ds, cand, device=device, progress=progress, log=log)
        image_file = image_array_path(cache_dir, "pooled", key, cand.split("+")[0])
        made_from = {"candidate": cand, "image": file_record(image_file), "fusion": FUSION_VERSION,
                     "question_sha256": array_sha256(q)}
        return made_from, lambda: bilinear_fusion(img[ds.image_index], q)

    return extract_candidates(cache_dir, key, ds, candidates, ds.questions, fuse, weights_dir=weights_dir,
                              device=device, progress=progress, log=log)


def ground_truth(candidates: Sequence[str] = FINETUNED_CANDIDATES, *, cache_dir, partial_path, dataset: str = DATASET,
                 mode: str = "finetuned", data_root=None, device: Optional[str] = None, protocol: Optional[dict] = None,
                 progress: bool = True, log: Callable[[str], None] = print, **dataset_options) -> Dict[str, dict]:
    """The ``mode`` ground truth of every candidate (module docstring, :data:`tasks.heads.MODES`);
    resumable through ``partial_path``. Returns ``{candidate: record}`` with ``test`` = answer
    accuracy (percent) on the test split."""
    import torch
    from torch.nn import functional as F

    from .heads import AnswerHead, ground_truth_runner

    def inputs_of(cand, split, ds):
        img, q = _features_of(cache_dir, cache_key(dataset, split), ds, cand, device=device, progress=progress, log=log)
        return img[ds.image_index], q

    return ground_truth_runner(mode)(
        candidates, dataset=dataset, partial_path=partial_path,
        protocol=dict(GT_PROTOCOLS[mode] if protocol is None else protocol), dataset_options=dataset_options,
        data_root=data_root, inputs_of=inputs_of, target_of=lambda ds: torch.from_numpy(ds.targets),
        make_head=lambda img, q, ds: AnswerHead(img.shape[1], q.shape[1], len(ds.classes)), loss_fn=F.cross_entropy,
        score_fn=lambda logits, y: float(100.0 * (logits.argmax(1) == y).float().mean()), measure="accuracy %",
        kind="pooled", progress=progress, log=log)
