"""The 9 image captioners of the EMMS paper: VisionEncoderDecoder {vit, swinvit, swin2vit} x
{bert, roberta, bart} (transformers).

Registry names ``{encoder}_{decoder}``, e.g. ``vit_bert``, ``swin2vit_bart``. Weights: a local
folder ``{weights_dir}/caption/{name}/`` written by ``save_pretrained`` of the fine-tuned
``VisionEncoderDecoderModel`` (``config.json`` + weights), holding also the decoder's tokenizer files
and the encoder's ``preprocessor_config.json`` (image size, mean, std).

Feature (EMMS): run the captioner under teacher forcing on the image and its reference caption and
take the INPUT of the last decoder layer's output layer norm (BERT / RoBERTa:
``encoder.layer[-1].output.LayerNorm``; BART: ``layers[-1].final_layer_norm``), B x T x 768,
averaged over the caption's T tokens. The decoder input is the tokenizer's encoding of the caption
(it starts with the CLS / ``<s>`` token, which is the decoder start token, as in the EMMS code),
truncated to :data:`MAX_CAPTION_TOKENS`. Unlike the reference code (plain mean over the padded
batch, which makes a feature depend on the other captions of its batch), padding positions are
excluded from the mean. There is no source classifier.

API: this group needs the caption text, so its models expose ``features(x, captions)`` and
``features_and_source_logits(x, captions)`` (``needs_captions = True``); ``models.extract`` passes
the captions of ``(image, caption)`` datasets. ``features_from_tokens(x, input_ids, attention_mask)``
takes already-tokenised captions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .base import FeatureModel, Preprocess
from .registry import register_model
from .transforms import IMAGENET_MEAN, IMAGENET_STD, stretch_transform
from .weights import require_weights

__all__ = ["CaptionSpec", "CAPTION_SPECS", "CaptionFeatureModel", "MAX_CAPTION_TOKENS",
           "caption_configs", "decoder_feature_layer"]

MAX_CAPTION_TOKENS = 64

ENCODERS = {  # name -> (hub id of the pre-trained encoder, image side, mean, std)
    "vit": ("google/vit-base-patch16-224-in21k", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "swinvit": ("microsoft/swin-base-patch4-window7-224-in22k", 224, IMAGENET_MEAN, IMAGENET_STD),
    "swin2vit": ("microsoft/swinv2-base-patch4-window12-192-22k", 192, IMAGENET_MEAN, IMAGENET_STD),
}
DECODERS = {"bert": "bert-base-uncased", "roberta": "roberta-base", "bart": "facebook/bart-base"}


@dataclass(frozen=True)
class CaptionSpec:
    encoder: str
    decoder: str

    @property
    def name(self) -> str:
        return f"{self.encoder}_{self.decoder}"

    @property
    def folder(self) -> str:
        return f"caption/{self.name}"


CAPTION_SPECS = tuple(CaptionSpec(e, d) for e in ENCODERS for d in DECODERS)


def caption_configs(spec: CaptionSpec, encoder_overrides: dict | None = None,
                    decoder_overrides: dict | None = None):
    """transformers configs of the paper's encoder / decoder architectures (base size), optionally
    overridden (e.g. tiny sizes for tests). Returns a ``VisionEncoderDecoderConfig``."""
    from transformers import (BartConfig, BertConfig, RobertaConfig, SwinConfig, Swinv2Config,
                              ViTConfig, VisionEncoderDecoderConfig)

    swin_base = dict(patch_size=4, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])
    encoders = {
        "vit": lambda kw: ViTConfig(**{"image_size": 224, "patch_size": 16, **kw}),
        "swinvit": lambda kw: SwinConfig(**{**swin_base, "image_size": 224, "window_size": 7, **kw}),
        "swin2vit": lambda kw: Swinv2Config(**{**swin_base, "image_size": 192, "window_size": 12, **kw}),
    }
    decoder_common = dict(is_decoder=True, add_cross_attention=True)
    decoders = {
        "bert": lambda kw: BertConfig(**{**decoder_common, **kw}),
        "roberta": lambda kw: RobertaConfig(**{"vocab_size": 50265, "max_position_embeddings": 514,
                                               "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                                               "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                                               **decoder_common, **kw}),
        "bart": lambda kw: BartConfig(**{"vocab_size": 50265, "d_model": 768, "encoder_layers": 6,
                                         "decoder_layers": 6, "encoder_attention_heads": 12,
                                         "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
                                         "decoder_ffn_dim": 3072, **decoder_common, **kw}),
    }
    enc = encoders[spec.encoder](encoder_overrides or {})
    dec = decoders[spec.decoder](decoder_overrides or {})
    return VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)


def decoder_feature_layer(network: nn.Module, decoder: str) -> nn.Module:
    """The layer norm whose input is the caption feature (see the module docstring)."""
    dec = network.decoder
    if decoder == "bert":
        return dec.bert.encoder.layer[-1].output.LayerNorm
    if decoder == "roberta":
        return dec.roberta.encoder.layer[-1].output.LayerNorm
    if decoder == "bart":
        return dec.model.decoder.layers[-1].final_layer_norm
    raise ValueError(f"unknown decoder {decoder!r}; expected one of {sorted(DECODERS)}")


class CaptionFeatureModel(FeatureModel):
    """Teacher-forced VisionEncoderDecoder; feature = masked token mean of the last decoder LN input."""

    needs_captions = True

    def __init__(self, *, spec: CaptionSpec, network: nn.Module, tokenizer, preprocess: Preprocess,
                 image_size: int, device: torch.device):
        hidden = network.config.decoder.hidden_size if hasattr(network.config.decoder, "hidden_size") \
            else network.config.decoder.d_model
        super().__init__(name=spec.name, group="caption", feature_dim=hidden, input_hw=(image_size, image_size),
                         device=device, num_source_classes=None, preprocess=preprocess)
        self.spec = spec
        self.network = network.to(device).eval()
        self.network.requires_grad_(False)
        self.tokenizer = tokenizer
        self._captured: list[torch.Tensor] = []
        decoder_feature_layer(self.network, spec.decoder).register_forward_pre_hook(
            lambda module, args: self._captured.append(args[0]))

    def tokenize(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError(f"{self.name} was built without a tokenizer (pretrained=False); "
                             "use features_from_tokens(x, input_ids, attention_mask)")
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError("captions must be a sequence of strings")
        enc = self.tokenizer(list(captions), padding=True, truncation=True, max_length=MAX_CAPTION_TOKENS,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    @torch.no_grad()
    def features_from_tokens(self, x: torch.Tensor, input_ids: torch.Tensor,
                             attention_mask: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W images + B x T caption token ids / mask -> B x D features."""
        x = self._check_batch(x)
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape or input_ids.shape[0] != x.shape[0]:
            raise ValueError(f"{self.name}: {x.shape[0]} images but token ids {tuple(input_ids.shape)} "
                             f"and mask {tuple(attention_mask.shape)}")
        mask = attention_mask.to(self.device)
        self._captured.clear()
        self.network(pixel_values=x, decoder_input_ids=input_ids.to(self.device), decoder_attention_mask=mask,
                     use_cache=False)
        if len(self._captured) != 1:
            raise RuntimeError(f"{self.name}: the feature layer ran {len(self._captured)} times (expected once)")
        hidden = self._captured.pop()                                 # B x T x D
        weights = mask.to(hidden.dtype).unsqueeze(-1)                 # B x T x 1
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    @torch.no_grad()
    def features(self, x: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        """B x 3 x H x W images and their B captions -> B x D features (no gradient)."""
        return self.features_and_source_logits(x, captions)[0]

    @torch.no_grad()
    def features_and_source_logits(self, x: torch.Tensor, captions: Sequence[str]):  # type: ignore[override]
        if len(captions) != x.shape[0]:
            raise ValueError(f"{self.name}: {x.shape[0]} images but {len(captions)} captions")
        ids, mask = self.tokenize(captions)
        return self.features_from_tokens(x, ids, mask).float(), None

    def _forward(self, x):  # pragma: no cover - the caption API always needs captions
        raise ValueError(f"{self.name} is a captioning model: call features(x, captions)")


def _load_pretrained(spec: CaptionSpec, weights_dir: Path | None):
    from transformers import AutoTokenizer, VisionEncoderDecoderModel

    what = (f"the fine-tuned {ENCODERS[spec.encoder][0]} + {DECODERS[spec.decoder]} captioner saved with "
            "save_pretrained, plus the decoder tokenizer and the encoder preprocessor_config.json")
    folder = require_weights(weights_dir, spec.folder, model=spec.name, what=what, is_dir=True)
    proc_file = require_weights(weights_dir, f"{spec.folder}/preprocessor_config.json", model=spec.name,
                                what="the encoder's image processor config (save_pretrained of its image processor)")
    network = VisionEncoderDecoderModel.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    proc = json.loads(proc_file.read_text())
    size = proc.get("size", {})
    side = int(size["height"] if isinstance(size, dict) else size)
    preprocess = stretch_transform(side, side, mean=proc["image_mean"], std=proc["image_std"],
                                   interpolation="bicubic" if proc.get("resample") == 3 else "bilinear")
    return network, tokenizer, preprocess, side


def _build(spec: CaptionSpec, weights_dir, device: torch.device, pretrained: bool) -> FeatureModel:
    if pretrained:
        network, tokenizer, preprocess, side = _load_pretrained(spec, weights_dir)
    else:
        from transformers import VisionEncoderDecoderModel

        network = VisionEncoderDecoderModel(config=caption_configs(spec))
        tokenizer = None
        _, side, mean, std = ENCODERS[spec.encoder]
        preprocess = stretch_transform(side, side, mean=mean, std=std)
    return CaptionFeatureModel(spec=spec, network=network, tokenizer=tokenizer, preprocess=preprocess,
                               image_size=side, device=device)


_NOT_TRAINABLE = ("a captioner is fine-tuned with its own sequence (captioning) loss, not as an image "
                  "classifier with a new linear head")

for _spec in CAPTION_SPECS:
    register_model(_spec.name, group="caption", weights=f"{_spec.folder}/ (save_pretrained folder)",
                   description=f"VisionEncoderDecoder {ENCODERS[_spec.encoder][0]} + {DECODERS[_spec.decoder]}",
                   not_trainable_reason=_NOT_TRAINABLE)(partial(_build, _spec))
