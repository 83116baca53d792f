"""Referring expression comprehension (EMMS: "the same pipeline as the image caption task").

* Label texts (one per sample, embedded with every text encoder, stacked (N, E, K)):
  task ``rec``: the box as text, image-normalised ``"[x1, y1, x2, y2]"`` to two decimals
  (``tasks.rec_scenes.box_text``), label source ``rec_box`` = ``caption_embeddings/{dataset}/box.{encoder}.npy``;
  task ``rec_expr``: the expression followed by the box, ``"the sandal [0.12, 0.40, 0.38, 0.71]"``,
  label source ``rec_expr_box`` = ``caption_embeddings/{dataset}/exprbox.{encoder}.npy``.
* Candidate ``"{backbone}+{expression encoder}"`` with a backbone that has a spatial map
  (``tasks.images.SPATIAL_READERS``). Feature X: ``tasks.fusion.bilinear_fusion`` of the 3x3 grid
  of cell means of the backbone's last spatial map (C * 9 values, so the position of the referent
  is kept) and the expression embedding. Images at IMAGE_RESOLUTION: the 112-px canvas through the
  model's preprocess, shrunk back to 112 px (sides a multiple of 14).
* Ground truth (``finetune_rec.py``, :mod:`tasks.heads`): Acc@0.5 (percent of test expressions whose
  predicted box has IoU >= 0.5 with the referent's) of a :class:`tasks.heads.FiLMBoxHead` on the
  spatial map (<= 6x6 cells) and the frozen expression embedding (L1 + GIoU loss); ``"finetuned"``
  (the committed table): backbone and head trained end to end on the same 112-px inputs;
  ``"head"`` (a cheap yardstick): the head on the frozen cached maps.

Full-scale fused candidate ``vilt_itm`` (``tasks.fused_models``, pooled image-expression [CLS]) is
extracted by the same :func:`extract`.

Offline set: ``rec_scenes`` (composed here, ``tasks.rec_scenes``); full scale: ``refcoco``,
``refcoco+``, ``refcocog`` (``tasks.rec_data``).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence


from data.fingerprint import array_sha256
from data.registry import DatasetSpec
from Label_embedding.offline_encoders import OFFLINE_LABEL_ENCODERS
from evaluation.inputs import LabelSource
from evaluation.runner import TaskSpec

from .base import TaskPlugin, register_task
from .fused_models import extract_candidates
from .fusion import FUSION_VERSION, bilinear_fusion
from .images import grid_pool, image_array_path
from .pipeline import candidate_inputs, cache_key, file_record, text_embeddings, write_labels
from .rec_data import build_rec_scenes, refer_specs
from .rec_scenes import box_text

__all__ = ["PLUGIN", "BACKBONES", "EXPRESSION_ENCODERS", "CANDIDATES", "DATASET", "label_texts", "extract",
           "ground_truth", "GT_PROTOCOLS", "GRID", "IMAGE_RESOLUTION"]

BACKBONES = ("efficientnet_lite0", "ocr_det", "ocr_det@c4")   # + any backbone with a spatial map
EXPRESSION_ENCODERS = ("minilm", "bow")
CANDIDATES = tuple(f"{b}+{q}" for b in BACKBONES for q in EXPRESSION_ENCODERS)
DATASET = "rec_scenes"
GRID = 3
IMAGE_RESOLUTION = {"resolution": 112, "multiple": 14}     # shared by extraction and fine-tuning
_HEAD = "FiLMBoxHead(hidden=64, per-cell boxes)"
_COMMON = {"loss": "L1 + GIoU", **IMAGE_RESOLUTION, "val_fraction": 0.2, "weight_decay": 1e-4, "seed": 0,
           "measure": "Acc@0.5 (IoU >= 0.5), percent"}
_PROBE = {"lrs": [1e-3, 3e-3], "epochs": 40, "batch_size": 64}
GT_PROTOCOLS = {
    "finetuned": {"head": _HEAD, "trained": "LP-FT: the head on frozen maps (probe), then backbone + head end to end; "
                  "expression embedding frozen", **_COMMON, "probe": _PROBE, "lrs": [1e-5, 1e-4, 1e-3], "head_lr_scale": 1.0,
                  "freeze_bn_stats": True, "epochs": 5, "batch_size": 32,
                  "standardise": "backbone map: fixed per-channel mean/std of the pre-trained fit-row maps"},
    "head": {"head": f"{_HEAD} on the frozen spatial map + frozen expression embedding", **_COMMON, **_PROBE,
             "standardise": "per-channel mean/std of the fit rows"},
}

#: task name -> (label source, role of its cache files, label-text builder)
_LABELS = {
    "rec": ("rec_box", "box", lambda ds: [box_text(b, *s) for b, s in zip(ds.boxes, ds.sizes)]),
    "rec_expr": ("rec_expr_box", "exprbox",
                 lambda ds: [f"{e} {box_text(b, *s)}" for e, b, s in zip(ds.expressions, ds.boxes, ds.sizes)]),
}
_PROVIDES = frozenset({"features", "label_embeddings"})


def _source(name: str, role: str) -> LabelSource:
    return LabelSource(name=name, path=lambda layout, dataset, encoder: layout.caption_embedding(dataset, f"{role}.{encoder}"),
                       needs_labels=False, description=f"(N, E) per-sample embeddings of the {role} label text")


PLUGIN = register_task(TaskPlugin(
    name="rec",
    specs=tuple(TaskSpec(name=t, label_source=src, provides=_PROVIDES,
                         default_metrics=("emms", "logme_flabel", "transrate_flabel"), default_group="offline_rec",
                         default_encoders=OFFLINE_LABEL_ENCODERS) for t, (src, _, _) in _LABELS.items()),
    evaluate_script="evaluate_metric_caption.py",
    label_text={"rec": "the box as text, image-normalised [x1, y1, x2, y2] to two decimals",
                "rec_expr": "the expression, a space, then the box text"},
    measure="Acc@0.5",
    description="referring expression comprehension: one box per expression, fused image-expression features",
    label_sources=tuple(_source(src, role) for src, role, _ in _LABELS.values()),
    datasets=(DatasetSpec(name=DATASET, kind="rec", build=build_rec_scenes, splits=("train", "test"),
                          description="REC scenes composed here from MNIST / Fashion-MNIST / easy-VQA images"),)
             + refer_specs(),
    candidates={c: "3x3 grid of the {} spatial map fused with the {} expression embedding".format(*c.split("+"))
                for c in CANDIDATES},
))


def label_texts(ds, task: str = "rec"):
    """The per-sample label texts of ``task`` ("rec" or "rec_expr") for the samples of ``ds``."""
    return _LABELS[task][2](ds)


def _inputs_of(cache_dir, key, ds, candidate, *, device, progress, log):
    return candidate_inputs(cache_dir, key, ds, candidate, "map", ds.expressions, "expression", **IMAGE_RESOLUTION,
                            device=device, progress=progress, log=log)


def extract(candidates: Sequence[str] = CANDIDATES, *, cache_dir, dataset: str = DATASET, split: str = "train",
            encoders: Sequence[str] = OFFLINE_LABEL_ENCODERS, data_root=None, device: Optional[str] = None,
            progress: bool = True, log: Callable[[str], None] = print, weights_dir=None,
            **dataset_options) -> Dict[str, str]:
    """Write labels (arange), both label texts' embeddings (every encoder) and the fused features of
    every candidate; returns ``{candidate: "extracted" | "skipped"}``."""
    import data

    ds = data.get_dataset(dataset, split=split, root=data_root, **dataset_options)
    key = cache_key(dataset, split)
    write_labels(cache_dir, key, ds, ds.targets, log=log)
    for task, (_, role, _) in _LABELS.items():
        texts = label_texts(ds, task)
        for enc in encoders:
            text_embeddings(cache_dir, key, texts, enc, role, log=log)

    def fuse(cand):
        maps, e = _inputs_of(cache_dir, key, ds, cand, device=device, progress=progress, log=log)
        made_from = {"candidate": cand, "image": file_record(image_array_path(cache_dir, "map", key, cand.split("+")[0])),
                     "grid": GRID, "fusion": FUSION_VERSION,
                     "expression_sha256": array_sha256(e)}
        return made_from, lambda: bilinear_fusion(grid_pool(maps, GRID)[ds.image_index], e)

    return extract_candidates(cache_dir, key, ds, candidates, ds.expressions, fuse, weights_dir=weights_dir,
                              device=device, progress=progress, log=log)


def ground_truth(candidates: Sequence[str] = CANDIDATES, *, cache_dir, partial_path, dataset: str = DATASET,
                 mode: str = "finetuned", data_root=None, device: Optional[str] = None, protocol: Optional[dict] = None,
                 progress: bool = True, log: Callable[[str], None] = print, **dataset_options) -> Dict[str, dict]:
    """The ``mode`` ground truth of every candidate (module docstring, :data:`tasks.heads.MODES`);
    resumable through ``partial_path``. Returns ``{candidate: record}`` with ``test`` = Acc@0.5
    (percent) on the test split."""
    import torch

    from .heads import FiLMBoxHead, box_iou_pairs, box_loss, ground_truth_runner

    def inputs_of(cand, split, ds):
        maps, e = _inputs_of(cache_dir, cache_key(dataset, split), ds, cand, device=device, progress=progress, log=log)
        return maps[ds.image_index], e

    return ground_truth_runner(mode)(
        candidates, dataset=dataset, partial_path=partial_path,
        protocol=dict(GT_PROTOCOLS[mode] if protocol is None else protocol), dataset_options=dataset_options,
        data_root=data_root, inputs_of=inputs_of, target_of=lambda ds: torch.from_numpy(ds.normalised_boxes()),
        make_head=lambda maps, e, ds: FiLMBoxHead(maps.shape[1], maps.shape[2], e.shape[1]), loss_fn=box_loss,
        score_fn=lambda pred, target: float(100.0 * (box_iou_pairs(pred, target) >= 0.5).float().mean()),
        measure="Acc@0.5 %", kind="map", progress=progress, log=log)
