"""The MLL benchmark (Tan et al., ICML 2025, Sec. 5): INB, ModelGPT and MLL on target tasks.

For every target task the ground truth is measured by running every hub model on the (subsampled)
test split: ``probs[m]`` (N, C) = softmax of the zero-shot logits of model m (Eq. 1, each model's
own prompt templates) and ``acc[m] = mean(argmax probs[m] == y)``. The methods then only choose
which models to reuse:

* INB: the hub's models ranked by ImageNet zero-shot accuracy (``imagenet_scores``);
* ModelGPT (LOVM): models ranked by the accuracy a linear model predicts from text-derived features,
  fitted leave-one-target-out on the other targets' ground truth (``mll.baselines``);
* MLL: per class the top-k models by the reuse metric (Eq. 7) of :mod:`mll.selection`.

With k models (paper Tables 1-2: k = 1 and k = 3) INB and ModelGPT reuse their top-k models for every
class, MLL its per-class top-k, all with the entropy-weighted ensemble of Eq. 8-10
(:mod:`mll.reuse`). Also: hub growth over random expansion orders (Fig. 3) and the alpha / k
ablations (Tables 3-4).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .graph import SemanticGraph
from .config import PIECES, MLLConfig, class_prompts, method_config
from .labeling import ModelHub, graph_image_embeddings
from .reuse import ensemble_predict, softmax, top_k_models
from .tasks import TargetTask, offline_target
from .selection import (SelectionResult, embed_captions, generate_class_descriptions, load_class_captions,
                        select_models)
from .vlm import VLM, cached_image_embeddings

__all__ = ["TargetTask", "offline_target", "model_probabilities", "graph_zero_shot_accuracy",
           "MLLBenchmark", "plot_hub_growth", "table_to_markdown", "offline_hub", "build_offline_benchmark", "build_full_benchmark"]


def model_probabilities(vlm: VLM, task: TargetTask, *, prompt: str = "classname", softmax_scale: Optional[float] = 100.0,
                        cache_dir=None, progress: bool = False) -> np.ndarray:
    """(N, C) zero-shot class probabilities ``softmax(s cos(f(x), t_c))`` of ``vlm`` on the task's
    images (Eq. 1). ``prompt``: a key of :data:`mll.config.PROMPTS` (``"classname"``: the bare
    class name, released; ``"paper"``: "a photo of {class}."; ``"templates"``: the model's own);
    ``softmax_scale`` s (released: 100; ``None``: the model's logit scale)."""
    emb = cached_image_embeddings(vlm, task.key, task.images, cache_dir, progress=progress,
                                  images_record=None if cache_dir is None else task.record)
    cls = vlm.class_embeddings(class_prompts(vlm, task.classnames, prompt))
    logits = vlm.logits_from_embeddings(emb, cls)
    if softmax_scale is not None:
        logits = logits * (float(softmax_scale) / float(vlm.logit_scale))
    return softmax(logits, axis=1)


def graph_zero_shot_accuracy(vlm: VLM, graph: SemanticGraph, *, cache_dir=None) -> float:
    """Zero-shot accuracy on the pooled sample images of the graph's class nodes, classified among
    all class nodes: the offline stand-in of "ImageNet accuracy" (the paper's sample datasets are
    ImageNet and its variants), used by INB and as ModelGPT's IN-score when no ImageNet is at hand."""
    nodes = sorted(graph.class_nodes)
    if len(nodes) < 2:
        raise ValueError("the graph needs at least two class nodes")
    refs, y = [], []
    for j, w in enumerate(nodes):
        refs.extend(graph.images_of(w))
        y.extend([j] * len(graph.images_of(w)))
    emb = graph_image_embeddings(vlm, graph, refs, cache_dir)
    cls = vlm.class_embeddings([vlm.prompts_for(n) for n in graph.names(nodes)])
    return float(np.mean(np.argmax(emb @ cls.T, axis=1) == np.asarray(y)))


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(y)))


class MLLBenchmark:
    """All methods on all target tasks for one labelled hub.

    ``imagenet_scores``: model -> ImageNet zero-shot accuracy (INB, ModelGPT's IN-score);
    ``text_encoder``: ``encode(texts) -> (N, E)`` for class and node captions (MLL selection);
    ``class_captions``: optional {task: {class: [captions]}} replacing the generated descriptions;
    ``config``: the method (:class:`mll.config.MLLConfig`, default the released variant), with
    ``k_nodes`` / ``alpha`` overriding its fields when given. The hub's labeling protocol must be
    the config's."""

    def __init__(self, hub: ModelHub, tasks: Sequence[TargetTask], text_encoder, *,
                 imagenet_scores: Mapping[str, float], config: Optional[MLLConfig] = None,
                 k_nodes: Optional[int] = None, alpha: Optional[float] = None, cache_dir=None,
                 class_captions: Optional[Mapping] = None,
                 modelgpt_regressor: str = "linear", modelgpt_fit: str = "sample", random_state: int = 0,
                 progress: bool = False):
        from .baselines.sample_fit import MODELGPT_FITS
        if modelgpt_fit not in MODELGPT_FITS:
            raise ValueError(f"unknown ModelGPT fit {modelgpt_fit!r}; available: {sorted(MODELGPT_FITS)}")
        if not tasks:
            raise ValueError("the benchmark needs at least one target task")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate target names: {names}")
        missing = [m for m in hub.model_names if m not in imagenet_scores]
        if missing:
            raise ValueError(f"imagenet_scores lacks models {missing}")
        self.hub, self.tasks = hub, list(tasks)
        self.models = hub.model_names
        self.text_encoder = text_encoder
        self.imagenet_scores = {m: float(imagenet_scores[m]) for m in self.models}
        config = method_config() if config is None else config
        self.config = config.replace(**{k: v for k, v in (("k_nodes", k_nodes), ("alpha", alpha)) if v is not None})
        if hub.kind != self.config.labeling:
            raise ValueError(f"the hub's labeling protocol is {hub.kind!r}, the config's {self.config.labeling!r}")
        self.k_nodes, self.alpha = self.config.k_nodes, self.config.alpha
        self.cache_dir, self.progress = cache_dir, progress
        self.modelgpt_regressor, self.modelgpt_fit = modelgpt_regressor, modelgpt_fit
        self.random_state = int(random_state)
        wn = hub.graph.wordnet
        self.captions: Dict[str, List[List[str]]] = {}
        for t in self.tasks:
            if class_captions is not None and t.name in class_captions:
                self.captions[t.name] = load_class_captions(class_captions[t.name], t.classnames)
            else:
                self.captions[t.name] = generate_class_descriptions(t.classnames, t.domain, t.task, wn)
        self._prepare()

    # -- precomputation -------------------------------------------------------------------------
    def _prepare(self) -> None:
        from tqdm.auto import tqdm
        self.y: Dict[str, np.ndarray] = {}
        self.probs: Dict[str, np.ndarray] = {}
        pairs = [(t, m) for t in self.tasks for m in self.models]
        it = tqdm(pairs, desc="zero-shot on targets", unit="run") if self.progress else pairs
        per_task: Dict[str, List[np.ndarray]] = {t.name: [] for t in self.tasks}
        for t, m in it:
            per_task[t.name].append(model_probabilities(self.hub.models[m], t, prompt=self.config.prompt,
                                                        softmax_scale=self.config.softmax_scale,
                                                        cache_dir=self.cache_dir))
        for t in self.tasks:
            self.y[t.name] = t.labels()
            self.probs[t.name] = np.stack(per_task[t.name])                    # (M, N, C)
        graph = self.hub.graph
        self.node_embeddings = embed_captions(self.text_encoder, graph.captions())
        cfg = self.config

        def counts(vs):
            return self.hub.node_counts([graph.nodes[i] for i in vs], self.models)

        self.selection: Dict[str, SelectionResult] = {
            t.name: select_models(counts, self.models, embed_captions(self.text_encoder, self.captions[t.name]),
                                  self.node_embeddings, t.classnames, k_nodes=cfg.k_nodes, alpha=cfg.alpha,
                                  transfer=cfg.transfer, score=cfg.class_score, eq7=cfg.eq7)
            for t in self.tasks}

    # -- ground truth ---------------------------------------------------------------------------
    def ground_truth(self) -> pd.DataFrame:
        """(M, T) zero-shot accuracy of every model on every target."""
        return pd.DataFrame({t: [_accuracy(p.argmax(axis=1), self.y[t]) for p in self.probs[t]]
                             for t in self.probs}, index=pd.Index(self.models, name="model"))

    def per_class_accuracy(self, task: str) -> np.ndarray:
        """(C, M) recall of every model on every class of ``task`` (the quantity Eq. 6 predicts)."""
        y, probs = self.y[task], self.probs[task]
        pred = probs.argmax(axis=2)                                            # (M, N)
        return np.stack([[np.mean(pred[m, y == c] == c) if np.any(y == c) else np.nan
                          for m in range(len(self.models))] for c in range(probs.shape[2])])

    def selection_quality(self) -> pd.DataFrame:
        """Diagnostics of Eq. 6 per task: Spearman correlation between MLL's predicted per-class
        performance and the measured per-class recall across (class, model) pairs, and the mean over
        classes of the within-class Spearman correlation across models (NaN when constant)."""
        from scipy.stats import spearmanr
        rows = {}
        for t in self.tasks:
            pred, true = self.selection[t.name].predicted, self.per_class_accuracy(t.name)
            ok = ~np.isnan(true)
            overall = spearmanr(pred[ok], true[ok]).statistic if ok.sum() > 2 else np.nan
            within = [spearmanr(pred[c], true[c]).statistic for c in range(pred.shape[0])
                      if np.ptp(pred[c]) > 0 and np.nanmax(true[c]) > np.nanmin(true[c])]
            rows[t.name] = {"spearman (all pairs)": overall,
                            "spearman within class (mean)": float(np.mean(within)) if within else np.nan}
        return pd.DataFrame(rows).T

    # -- rankings of the baselines --------------------------------------------------------------
    def inb_ranking(self, models: Optional[Sequence[str]] = None) -> List[str]:
        from .baselines import inb_rank
        models = self.models if models is None else list(models)
        return inb_rank({m: self.imagenet_scores[m] for m in models})

    def modelgpt_predictions(self) -> pd.DataFrame:
        """(M, T) ModelGPT's predicted accuracies: fitted on the sample datasets (``modelgpt_fit="sample"``,
        the paper) or leave-one-target-out (``"loto"``); :mod:`mll.baselines.sample_fit`."""
        if not hasattr(self, "_modelgpt"):
            from .baselines.sample_fit import modelgpt_target_predictions
            self._modelgpt = modelgpt_target_predictions(
                self.hub.models, self.hub.graph, self.tasks, self.captions, self.imagenet_scores,
                fit=self.modelgpt_fit, target_ground_truth=self.ground_truth if self.modelgpt_fit == "loto" else None,
                regressor=self.modelgpt_regressor, random_state=self.random_state, cache_dir=self.cache_dir)
        return self._modelgpt

    def modelgpt_ranking(self, task: str, models: Optional[Sequence[str]] = None) -> List[str]:
        from .baselines import rank_by_score
        pred = self.modelgpt_predictions()[task]
        return rank_by_score(pred if models is None else pred.loc[list(models)])

    # -- accuracies -----------------------------------------------------------------------------
    def _reuse_accuracy(self, task: str, per_class_models: np.ndarray, models: Sequence[str]) -> float:
        idx = [self.models.index(m) for m in models]
        pred, _ = ensemble_predict(self.probs[task][idx], per_class_models, weights=self.config.weights)
        return _accuracy(pred, self.y[task])

    def _same_models_everywhere(self, task: str, ranking: Sequence[str], k: int) -> float:
        chosen = list(ranking[:k])
        n_classes = self.probs[task].shape[2]
        return self._reuse_accuracy(task, np.tile(np.arange(len(chosen)), (n_classes, 1)), chosen)

    def mll_accuracy(self, task: str, k: int, *, alpha: Optional[float] = None,
                     models: Optional[Sequence[str]] = None) -> float:
        """MLL's accuracy on ``task`` reusing per class its top-``k`` models of ``models`` (default: the
        whole hub) ranked by the reuse metric with ``alpha``."""
        models = self.models if models is None else list(models)
        sel = self.selection[task].restrict(models, self.alpha if alpha is None else alpha)
        return self._reuse_accuracy(task, top_k_models(sel.scores, k), models)

    def per_class_oracle_accuracy(self, task: str) -> float:
        """Per class the model with the best measured recall on it, reused as MLL reuses its k=1
        choice: the accuracy of a perfect per-class selector (:mod:`mll.heterogeneity`)."""
        from .heterogeneity import per_class_oracle_models
        return self._reuse_accuracy(task, per_class_oracle_models(self.per_class_accuracy(task)), self.models)

    def inb_accuracy(self, task: str, k: int, models: Optional[Sequence[str]] = None) -> float:
        return self._same_models_everywhere(task, self.inb_ranking(models), k)

    def modelgpt_accuracy(self, task: str, k: int) -> float:
        return self._same_models_everywhere(task, self.modelgpt_ranking(task), k)

    # -- tables ---------------------------------------------------------------------------------
    def main_table(self, ks: Sequence[int] = (1, 3)) -> pd.DataFrame:
        """Paper Tables 1-2: rows ``{method} (k={k})`` plus the best and mean single model, columns
        the targets and their average."""
        methods: Dict[str, Callable[[str, int], float]] = {
            "INB": self.inb_accuracy, "ModelGPT": self.modelgpt_accuracy, "MLL": self.mll_accuracy}
        rows = {}
        for k in ks:
            for name, fn in methods.items():
                rows[f"{name} (k={k})"] = {t.name: fn(t.name, k) for t in self.tasks}
        gt = self.ground_truth()
        rows["best single model (oracle)"] = gt.max(axis=0).to_dict()
        rows["per-class oracle (k=1)"] = {t.name: self.per_class_oracle_accuracy(t.name) for t in self.tasks}
        rows["mean single model"] = gt.mean(axis=0).to_dict()
        table = pd.DataFrame(rows).T[[t.name for t in self.tasks]]
        table["Avg."] = table.mean(axis=1)
        return table

    def alpha_ablation(self, alphas: Sequence[float], k: int = 1) -> pd.Series:
        """Paper Table 3: MLL's average accuracy over the targets for each alpha."""
        return pd.Series({a: np.mean([self.mll_accuracy(t.name, k, alpha=a) for t in self.tasks]) for a in alphas},
                         name=f"MLL avg (k={k})").rename_axis("alpha")

    def k_ablation(self, ks: Sequence[int]) -> pd.Series:
        """Paper Table 4: MLL's average accuracy for each number of reused models k."""
        return pd.Series({k: np.mean([self.mll_accuracy(t.name, k) for t in self.tasks]) for k in ks},
                         name="MLL avg").rename_axis("k")

    def hub_growth(self, n_orders: int, *, k: int = 1, random_state: int = 0) -> Dict[str, np.ndarray]:
        """Paper Fig. 3: the hub grows from 1 model to all along ``n_orders`` random expansion orders.
        Returns ``{"MLL": (n_orders, M), "INB": (n_orders, M)}``: the average accuracy over the
        targets with the first s models of each order (column s-1)."""
        if n_orders < 1:
            raise ValueError(f"n_orders must be >= 1, got {n_orders}")
        rng = np.random.default_rng(random_state)
        out = {"MLL": np.empty((n_orders, len(self.models))), "INB": np.empty((n_orders, len(self.models)))}
        for o in range(n_orders):
            order = [self.models[i] for i in rng.permutation(len(self.models))]
            for s in range(1, len(order) + 1):
                sub = order[:s]
                out["MLL"][o, s - 1] = np.mean([self.mll_accuracy(t.name, k, models=sub) for t in self.tasks])
                out["INB"][o, s - 1] = np.mean([self.inb_accuracy(t.name, k, models=sub) for t in self.tasks])
        return out


def table_to_markdown(table: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A pipe table of ``table`` (index as first column), without the optional ``tabulate`` package."""
    head = [str(table.index.name or "")] + [str(c) for c in table.columns]
    fmt = lambda v: format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join([str(i)] + [fmt(v) for v in row]) + " |" for i, row in zip(table.index, table.values)]
    return "\n".join(lines) + "\n"


def plot_hub_growth(curves: Mapping[str, np.ndarray], path: str | os.PathLike, *, title: str = "") -> Path:
    """Mean +- std over expansion orders of the average target accuracy vs hub size (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, arr in curves.items():
        arr = np.asarray(arr, dtype=float)
        x = np.arange(1, arr.shape[1] + 1)
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("number of models in the hub")
    ax.set_ylabel("average accuracy over targets")
    ax.set_title(title or f"hub growth ({next(iter(curves.values())).shape[0]} random orders)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# =============================================================================================
# The two setups: offline (stand-in hub, offline datasets) and full scale (open_clip, 17 targets)
# =============================================================================================
def build_offline_benchmark(*, sources: Sequence[str], targets: Sequence[str], models: Optional[Sequence[str]] = None,
                            images_per_node: int = 10, images_per_source: Optional[int] = None, per_class: int = 15,
                            image_size: Optional[int] = 128, variant: str = "released",
                            config: Optional[MLLConfig] = None, n_distractors: Optional[int] = None,
                            k_nodes: Optional[int] = None, alpha: Optional[float] = None,
                            text_encoder: str = "minilm", class_captions=None, modelgpt_fit: str = "sample",
                            cache_dir=None, random_state: int = 0, progress: bool = False) -> MLLBenchmark:
    """The offline benchmark: the ConSE stand-in hub, a graph whose sample images are the *train*
    splits of the offline ``sources`` (classes mapped to synsets, graph built as the config says),
    the *test* splits of ``targets`` as target tasks, INB scored by :func:`graph_zero_shot_accuracy`.
    The method is ``config`` or ``METHOD_VARIANTS[variant]``, with ``n_distractors`` / ``k_nodes`` /
    ``alpha`` overriding it when given; ``images_per_source`` defaults to ``images_per_node``."""
    from Label_embedding import get_text_encoder
    from .vlm import create_vlm, list_vlms
    models = list_vlms("offline") if models is None else list(models)
    cfg, graph, hub = offline_hub(sources=sources, images_per_node=images_per_node,
                                  images_per_source=images_per_source, variant=variant, config=config,
                                  n_distractors=n_distractors, k_nodes=k_nodes, alpha=alpha, cache_dir=cache_dir,
                                  random_state=random_state, progress=progress)
    for name in _progress(models, progress, "labelling models"):
        hub.add_model(create_vlm(name, image_size=image_size, cache_dir=cache_dir))
    scores = {m: graph_zero_shot_accuracy(hub.models[m], graph, cache_dir=cache_dir) for m in hub.model_names}
    tasks = [offline_target(t, per_class=per_class, random_state=random_state) for t in targets]
    from .aligned import assert_not_fitted_on
    assert_not_fitted_on(hub.models.values(), tasks)       # no aligner has seen a target's test images
    return MLLBenchmark(hub, tasks, get_text_encoder(text_encoder), imagenet_scores=scores, config=cfg,
                        cache_dir=cache_dir, class_captions=class_captions, modelgpt_fit=modelgpt_fit,
                        random_state=random_state, progress=progress)


def offline_hub(*, sources: Sequence[str], images_per_node: int = 10, images_per_source: Optional[int] = None,
                variant: str = "released", config: Optional[MLLConfig] = None, n_distractors: Optional[int] = None,
                k_nodes: Optional[int] = None, alpha: Optional[float] = None, cache_dir=None, random_state: int = 0,
                progress: bool = False):
    """``(config, graph, hub)`` of :func:`build_offline_benchmark` before any model is added: the
    graph on the *train* splits of ``sources`` (same arguments, same cache keys), so that a worker
    (``executor.grids.label_offline_hub``) rebuilds exactly the hub the benchmark labels."""
    from .graph import offline_sample_source
    cfg = _config(variant, config, n_distractors=n_distractors, k_nodes=k_nodes, alpha=alpha)
    graph, hub = _graph_and_hub("offline", sources, cfg, images_per_node,
                                images_per_node if images_per_source is None else images_per_source,
                                random_state, cache_dir, progress)
    hub.add_sources([offline_sample_source(s, "train") for s in sources])
    return cfg, graph, hub


def build_full_benchmark(*, sample_root, target_root, weights_dir=None, models: Optional[Sequence[str]] = None,
                         sample_sources: Sequence[str] = ("imagenet", "imagenet_v2", "imagenet_sketch",
                                                          "imagenet_a", "imagenet_r"),
                         targets: Optional[Sequence[str]] = None, images_per_node: int = 75,
                         images_per_source: Optional[int] = 25, per_class: Optional[int] = None,
                         variant: str = "released", config: Optional[MLLConfig] = None,
                         n_distractors: Optional[int] = None, k_nodes: Optional[int] = None,
                         alpha: Optional[float] = None, text_encoder: str = "minilm", class_captions=None,
                         modelgpt_fit: str = "sample", cache_dir=None, random_state: int = 0,
                         progress: bool = False) -> MLLBenchmark:
    """The paper's benchmark: the 49 open_clip models (local weights), a graph on the five ImageNet
    sample datasets, the 17 target datasets from local roots, INB scored by the hub table's
    ImageNet accuracy. ``class_captions``: optional {target: caption JSON path}. Method as in
    :func:`build_offline_benchmark`; the released graph takes up to ``images_per_source`` (25)
    images per sample dataset and ``images_per_node`` (75) in all."""
    from Label_embedding import get_text_encoder
    from .graph import create_sample_source
    from .targets import FULL_TARGETS, full_target
    from .vlm import create_vlm, list_vlms, openclip_hub
    from .preflight import check_full_scale
    models = list_vlms("openclip") if models is None else list(models)
    targets = FULL_TARGETS if targets is None else targets
    check_full_scale(sample_root=sample_root, target_root=target_root, weights_dir=weights_dir, models=models,
                     sample_sources=sample_sources, targets=targets, text_encoder=text_encoder)
    cfg = _config(variant, config, n_distractors=n_distractors, k_nodes=k_nodes, alpha=alpha)
    graph, hub = _graph_and_hub("full", sample_sources, cfg, images_per_node, images_per_source, random_state,
                                cache_dir, progress)
    hub.add_sources([create_sample_source(s, sample_root) for s in sample_sources])
    for name in _progress(models, progress, "labelling models"):
        hub.add_model(create_vlm(name, weights_dir=weights_dir))
    imagenet = {f"{r['name']}@{r['pretrained']}": float(r["ImageNet"]) for r in openclip_hub()}
    tasks = [full_target(t, root=target_root, per_class=per_class, random_state=random_state) for t in targets]
    return MLLBenchmark(hub, tasks, get_text_encoder(text_encoder), imagenet_scores=imagenet, config=cfg,
                        cache_dir=cache_dir, class_captions=class_captions, modelgpt_fit=modelgpt_fit,
                        random_state=random_state, progress=progress)


def _config(variant: str, config: Optional[MLLConfig], **overrides) -> MLLConfig:
    if config is not None:
        return config.replace(**{k: v for k, v in overrides.items() if v is not None})
    return method_config(variant, **overrides)


def _graph_and_hub(scale: str, sources: Sequence[str], cfg: MLLConfig, images_per_node: int,
                   images_per_source: Optional[int], random_state: int, cache_dir, progress: bool):
    """An empty graph built as ``cfg.graph`` says and its hub with ``cfg``'s labeling protocol. The
    graph name (the key of its caches) encodes sources, construction, image counts and seed (the
    reconstruction keeps its earlier names)."""
    if cfg.graph == "reconstruction":
        name, per_source = f"{scale}-{'+'.join(sources)}-n{images_per_node}-rs{random_state}", None
    else:
        per_source = images_per_source
        name = (f"{scale}-{'+'.join(sources)}-{cfg.graph}-n{images_per_node}-s{per_source or 'all'}"
                f"-rs{random_state}")
    graph = SemanticGraph(name, images_per_node=images_per_node, images_per_source=per_source,
                          construction=cfg.graph, random_state=random_state)
    hub = ModelHub(graph, protocol=cfg.protocol(random_state), label_dir=cache_dir, cache_dir=cache_dir,
                   progress=progress)
    return graph, hub


def _progress(items, progress: bool, desc: str):
    if not progress:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, unit="model")


# =============================================================================================
# Departures between two variants, one piece at a time (docs/mll.md, "Departures")
# =============================================================================================
def departure_configs(base: str = "reconstruction", target: str = "released") -> Dict[str, MLLConfig]:
    """Configurations that switch the pieces of :data:`mll.config.PIECES` one at a time:
    ``base``, ``base + {piece}`` (only that piece from ``target``) for each piece, ``target`` and
    ``target - {piece}`` (that piece back from ``base``)."""
    from .config import METHOD_VARIANTS
    b, t = METHOD_VARIANTS[base], METHOD_VARIANTS[target]
    out = {base: b}
    for piece, fields in PIECES.items():
        out[f"{base} + {target} {piece}"] = b.replace(**{f: getattr(t, f) for f in fields})
    out[target] = t
    for piece, fields in PIECES.items():
        out[f"{target} - {piece} ({base})"] = t.replace(**{f: getattr(b, f) for f in fields})
    return out


def compare_variants(configs: Mapping[str, MLLConfig], build: Callable[[MLLConfig], "MLLBenchmark"],
                     ks: Sequence[int] = (1, 3)) -> pd.DataFrame:
    """One row per configuration: MLL's and INB's mean accuracy over the targets for each k, and
    the mean best single model. ``build(config) -> MLLBenchmark`` (e.g. a partial of
    :func:`build_offline_benchmark`; its caches make repeated builds cheap)."""
    rows = {}
    for label, cfg in configs.items():
        bench = build(cfg)
        row = {}
        for k in ks:
            row[f"MLL (k={k})"] = float(np.mean([bench.mll_accuracy(t.name, k) for t in bench.tasks]))
        for k in ks:
            row[f"INB (k={k})"] = float(np.mean([bench.inb_accuracy(t.name, k) for t in bench.tasks]))
        row["best single model"] = float(bench.ground_truth().max(axis=0).mean())
        rows[label] = row
    return pd.DataFrame(rows).T.rename_axis("configuration")
