"""Fuse the primitive-op patterns of an onnx2torch graph back into single PyTorch ops.

ONNX exports spell layer norm, GELU, hard-swish and biased linear layers as chains of elementwise
ops; onnx2torch converts each op to one module, so a training step runs every chain as several
memory-bound passes (and as many backward passes). For fine-tuning the converted networks
(:class:`models.onnx_zoo.OnnxTrainable`) :func:`fuse_graph` rewrites, in place:

================  ==========================================================  ====================
name              pattern (``x``: one input; constants are scalar buffers)     replaced by
================  ==========================================================  ====================
``layer_norm``    ``(d / sqrt(mean(d ** 2) + eps)) * g + b``, ``d = x - mean(x)``  ``F.layer_norm``
                  (means over the last axis; ``g``, ``b``: trainable ``(D,)``)
``gelu``          ``x * (erf(x / sqrt 2) + 1) * 0.5``                           ``F.gelu`` (exact)
``hardswish``     ``x * relu6(x + 3) / 6``                                      ``F.hardswish``
``linear``        ``x @ W + b`` (``W`` trainable ``(I, O)``, ``b`` trainable ``(O,)``)  ``F.linear(x, W.t(), b)``
================  ==========================================================  ====================

Each replacement is the same function of the same trainable parameters (so the optimiser sees the
same parameters); only the rounding differs (hard-swish: identical). A match requires every inner
node to have no other user. Tested against the unfused graph on the real networks
(``tests/test_models_offline.py``); measured in ``docs/finetune.md`` (Cost).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
from onnx2torch.node_converters.binary_math_operations import _TORCH_FUNCTION_FROM_ONNX_TYPE, OnnxBinaryMathOperation
from torch import fx, nn
from torch.nn import functional as F

__all__ = ["FUSIONS", "fuse_graph", "fuse_hardswish", "fuse_layer_norm", "fuse_gelu", "fuse_linear"]


class _Graph:
    """Pattern helpers over one ``fx.GraphModule`` produced by onnx2torch."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm

    def module(self, node) -> Optional[nn.Module]:
        return self.gm.get_submodule(node.target) if getattr(node, "op", None) == "call_module" else None

    def kind(self, node) -> Optional[str]:
        """onnx2torch's op name of ``node``: ``"Add"``, ``"Mul"``, ``"Div"``, ``"Sub"`` (binary
        math without old-style broadcasting), ``"ReduceMean"``, ``"Pow"``, ``"Sqrt"``, ``"Erf"``,
        ``"MatMul"``, ``"Relu6"``; else ``None``."""
        mod = self.module(node)
        if mod is None:
            return None
        if isinstance(mod, OnnxBinaryMathOperation):
            if mod.broadcast == 1 and mod.axis is not None:
                return None
            return next((k for k, f in _TORCH_FUNCTION_FROM_ONNX_TYPE.items() if f is mod.math_op_function), None)
        if isinstance(mod, nn.ReLU6):
            return "Relu6"
        name = type(mod).__name__
        if name == "OnnxReduceStaticAxes":
            return mod.operation_type if (mod.axes == [-1] and mod.keepdims) else None
        if name == "OnnxPow":
            return None if (mod.broadcast == 1 and mod.axis is not None) else "Pow"
        return {"OnnxSqrt": "Sqrt", "OnnxErf": "Erf", "OnnxMatMul": "MatMul"}.get(name)

    def tensor(self, node) -> Optional[torch.Tensor]:
        if getattr(node, "op", None) != "get_attr":
            return None
        owner, _, name = node.target.rpartition(".")
        t = getattr(self.gm.get_submodule(owner) if owner else self.gm, name, None)
        return t if isinstance(t, torch.Tensor) else None

    def scalar(self, node, value: Optional[float] = None, *, rel: float = 0.0) -> Optional[float]:
        """The value of a one-element floating constant buffer read by ``node`` (equal to ``value``
        within ``rel`` when given), else ``None``."""
        t = self.tensor(node)
        if t is None or isinstance(t, nn.Parameter) or not t.is_floating_point() or t.numel() != 1:
            return None
        v = float(t)
        if value is not None and not math.isclose(v, value, rel_tol=rel, abs_tol=0.0):
            return None
        return v

    def param(self, node, ndim: int) -> Optional[torch.Tensor]:
        t = self.tensor(node)
        return t if isinstance(t, nn.Parameter) and t.ndim == ndim else None

    @staticmethod
    def only_user(node, user) -> bool:
        return len(node.users) == 1 and user in node.users

    def split(self, node, kind: str, other: Callable) -> Optional[tuple]:
        """``(a, b)`` with ``node = kind(a, b)`` or ``kind(b, a)`` and ``other(b)`` true, else ``None``."""
        if self.kind(node) != kind:
            return None
        first, second = node.args
        if other(second):
            return first, second
        if other(first):
            return second, first
        return None


def _replace(g: _Graph, last, fn, args: tuple, inner) -> None:
    graph = g.gm.graph
    with graph.inserting_before(last):
        new = graph.call_function(fn, args)
    last.replace_all_uses_with(new)
    for n in (last, *inner):
        graph.erase_node(n)


def fuse_hardswish(gm: fx.GraphModule) -> int:
    """``Div(Mul(x, Relu6(Add(x, 3))), 6)`` -> ``F.hardswish(x)`` (how PaddleOCR exports it)."""
    g, n_fused = _Graph(gm), 0
    for div in list(gm.graph.nodes):
        if g.kind(div) != "Div" or g.scalar(div.args[1], 6.0) is None:
            continue
        mul = div.args[0]
        if g.kind(mul) != "Mul" or not g.only_user(mul, div):
            continue
        for x, clip in (mul.args, mul.args[::-1]):
            if g.kind(clip) == "Relu6" and g.only_user(clip, mul):
                add = g.split(clip.args[0], "Add", lambda c: g.scalar(c, 3.0) is not None)
                if add is not None and add[0] is x and g.only_user(clip.args[0], clip):
                    _replace(g, div, F.hardswish, (x,), (mul, clip, clip.args[0]))
                    n_fused += 1
                    break
    return n_fused


def fuse_layer_norm(gm: fx.GraphModule) -> int:
    """``Add(Mul(Div(d, Sqrt(Add(ReduceMean(Pow(d, 2)), eps))), g), b)``, ``d = Sub(x, ReduceMean(x))``
    (last axis, kept) -> ``F.layer_norm(x, (D,), g, b, eps)`` (how torch.onnx exports LayerNorm
    below opset 17)."""
    g, n_fused = _Graph(gm), 0
    for out in list(gm.graph.nodes):
        ab = g.split(out, "Add", lambda n: g.param(n, 1) is not None)
        if ab is None:
            continue
        scaled, beta = ab
        mg = g.split(scaled, "Mul", lambda n: g.param(n, 1) is not None)
        if mg is None or not g.only_user(scaled, out):
            continue
        div, gamma = mg
        if g.kind(div) != "Div" or not g.only_user(div, scaled):
            continue
        d, sqrt = div.args
        if g.kind(sqrt) != "Sqrt" or not g.only_user(sqrt, div):
            continue
        ve = g.split(sqrt.args[0], "Add", lambda n: g.scalar(n) is not None)
        if ve is None or not g.only_user(sqrt.args[0], sqrt):
            continue
        var, eps_node = ve
        if g.kind(var) != "ReduceMean" or not g.only_user(var, sqrt.args[0]):
            continue
        sq = var.args[0]
        if g.kind(sq) != "Pow" or sq.args[0] is not d or g.scalar(sq.args[1], 2.0) is None or not g.only_user(sq, var):
            continue
        if g.kind(d) != "Sub" or set(d.users) != {sq, div}:
            continue
        x, mean = d.args
        if g.kind(mean) != "ReduceMean" or mean.args[0] is not x or not g.only_user(mean, d):
            continue
        width = g.param(gamma, 1).shape[0]
        if g.param(beta, 1).shape[0] != width:
            continue
        _replace(g, out, F.layer_norm, (x, (width,), gamma, beta, g.scalar(eps_node)),
                 (scaled, div, sqrt, sqrt.args[0], var, sq, d, mean))
        n_fused += 1
    return n_fused


def fuse_gelu(gm: fx.GraphModule) -> int:
    """``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)`` -> ``F.gelu(x)`` (the exact, erf form)."""
    g, n_fused = _Graph(gm), 0
    for out in list(gm.graph.nodes):
        half = g.split(out, "Mul", lambda n: g.scalar(n, 0.5) is not None)
        if half is None:
            continue
        prod = half[0]
        for x, one_plus in (prod.args, prod.args[::-1]) if g.kind(prod) == "Mul" and g.only_user(prod, out) else ():
            add = g.split(one_plus, "Add", lambda n: g.scalar(n, 1.0) is not None)
            if add is None or not g.only_user(one_plus, prod):
                continue
            erf = add[0]
            if g.kind(erf) != "Erf" or not g.only_user(erf, one_plus):
                continue
            div = erf.args[0]
            root2 = g.scalar(div.args[1], math.sqrt(2.0), rel=1e-6) if g.kind(div) == "Div" else None
            if root2 is not None and div.args[0] is x and g.only_user(div, erf):
                _replace(g, out, F.gelu, (x,), (prod, one_plus, erf, div))
                n_fused += 1
                break
    return n_fused


def fuse_linear(gm: fx.GraphModule) -> int:
    """``Add(MatMul(x, W), b)`` with trainable ``W`` (I, O) and ``b`` (O,) -> ``F.linear(x, W.t(), b)``."""
    g, n_fused = _Graph(gm), 0
    graph = gm.graph
    for out in list(graph.nodes):
        mb = g.split(out, "Add", lambda n: g.param(n, 1) is not None)
        if mb is None:
            continue
        mm, bias = mb
        if g.kind(mm) != "MatMul" or not g.only_user(mm, out):
            continue
        x, w = mm.args
        weight = g.param(w, 2)
        if weight is None or weight.shape[1] != g.param(bias, 1).shape[0]:
            continue
        with graph.inserting_before(out):
            wt = graph.call_method("t", (w,))
        _replace(g, out, F.linear, (x, wt, bias), (mm,))
        n_fused += 1
    return n_fused


#: name -> pass, applied in this order by :func:`fuse_graph`
FUSIONS: Dict[str, Callable[[fx.GraphModule], int]] = {
    "layer_norm": fuse_layer_norm, "gelu": fuse_gelu, "hardswish": fuse_hardswish, "linear": fuse_linear}


def fuse_graph(gm: fx.GraphModule) -> Dict[str, int]:
    """Apply every pass of :data:`FUSIONS` to ``gm`` in place; returns ``{name: patterns fused}``."""
    counts = {name: fuse(gm) for name, fuse in FUSIONS.items()}
    if any(counts.values()):
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
        gm.delete_all_unused_submodules()
    return counts
