"""Compute backends of the metrics: where the heavy linear algebra runs (``docs/metrics.md``, "Backends").

One source of every formula: the metric modules are written once (numpy, float64) and get their
expensive steps -- Gram matrices ``X^T X`` / ``Xc^T Xc`` (N D^2), eigendecompositions (D^3),
projections ``X^T Y`` (N D E K), per-class log-determinants (TransRate), group sums, the
Ledoit-Wolf row norms, LEEP's joint table -- from the :class:`metrics.PreparedFeatures` they are
given (or from the backend, for LEEP / NCE). A backend is a factory of prepared features:

* ``"numpy"`` (default): :class:`metrics.PreparedFeatures` itself, the reference numbers;
* ``"torch"``: :class:`metrics.torch_backend.TorchPreparedFeatures`, the same quantities computed by
  PyTorch on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; None = CUDA when available, else CPU) in
  ``dtype`` (``torch.float64`` by default: equal to numpy to rounding; ``torch.float32`` is faster on
  GPUs and approximate). The small remainders (K x K QPs, LogME's fixed point over the spectrum)
  stay numpy. torch is imported only when this backend is first used.

Validation stays in numpy at the boundary (same errors for every backend); results are python floats.
Metrics that take ``backend=`` / ``device=`` carry ``fn.backends`` (the names they accept)::

    metrics.get_metric("logme")(X, y, backend="torch", device="cuda")
    B = metrics.get_backend("torch", device="cuda", dtype=torch.float32); metrics.hscore(X, y, backend=B)
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from common import Registry

from ._prepared import PreparedFeatures, prepare_features

__all__ = ["Backend", "BACKENDS", "get_backend", "resolve_backend", "prepare_on", "to_host", "accepts_backend",
           "auto_backend", "list_backends"]


class Backend:
    """A compute backend: ``name``, ``key``, ``numpy`` (True for this reference backend) and
    :meth:`prepare`, which gives the prepared features whose heavy steps run on it. The numpy backend
    is this class; other backends implement the same attributes (``metrics.torch_backend.TorchBackend``,
    which also has ``leep`` / ``nce``)."""

    name = "numpy"
    numpy = True

    @property
    def key(self) -> str:
        """Identifies the backend, device and dtype (prepared features are shared per key)."""
        return self.name

    def prepare(self, F: PreparedFeatures) -> PreparedFeatures:
        """``F`` on this backend (``F`` itself if it already is; else cached on ``F``, so the metrics
        of one model given the same numpy :class:`PreparedFeatures` share one conversion)."""
        if type(F) is PreparedFeatures:
            return F
        return F._cached("backend:numpy", lambda: PreparedFeatures(F.X, side=F._side))

    def __repr__(self) -> str:
        return f"Backend({self.key})"


#: ``{name: factory(device=None, dtype=None) -> Backend}``
BACKENDS: Registry[Callable[..., Backend]] = Registry("metric backend")


@BACKENDS.register("numpy")
def _numpy_backend(device=None, dtype=None) -> Backend:
    if device is not None:
        raise ValueError(f"backend 'numpy' runs on the CPU and takes no device, got device={device!r}")
    if dtype is not None and dtype not in (np.float64, np.dtype(np.float64), "float64"):
        raise ValueError(f"backend 'numpy' computes in float64, got dtype={dtype!r}")
    return Backend()


@BACKENDS.register("torch")
def _torch_backend(device=None, dtype=None) -> Backend:
    from .torch_backend import TorchBackend    # torch is imported only when it is used
    return TorchBackend(device=device, dtype=dtype)


def list_backends() -> list[str]:
    """Sorted names of the registered backends."""
    return sorted(BACKENDS)


def get_backend(name: str = "numpy", *, device=None, dtype=None) -> Backend:
    """The backend ``name`` (``KeyError`` listing the available ones) on ``device`` in ``dtype``;
    ``ValueError`` naming a bad device or dtype."""
    return BACKENDS[name](device=device, dtype=dtype)


def _is_backend(obj) -> bool:
    return isinstance(obj, Backend) or all(hasattr(obj, a) for a in ("name", "key", "numpy", "prepare"))


def auto_backend() -> Backend:
    """torch on the current CUDA device when torch is installed and a GPU is available, else numpy."""
    try:
        import torch
    except ImportError:
        return get_backend("numpy")
    return get_backend("torch", device="cuda") if torch.cuda.is_available() else get_backend("numpy")


def resolve_backend(backend=None, device=None) -> Backend:
    """``backend`` as a :class:`Backend`: None -> numpy (torch if a ``device`` is given), ``"auto"`` ->
    :func:`auto_backend`, a name -> :func:`get_backend` (with ``device``), a :class:`Backend` -> itself
    (``device`` must then be None)."""
    if _is_backend(backend) or backend == "auto":
        if device is not None:
            raise ValueError(f"device={device!r} given with backend={backend!r}; give one of them")
        return backend if _is_backend(backend) else auto_backend()
    if backend is None:
        backend = "numpy" if device is None else "torch"
    if not isinstance(backend, str):
        raise ValueError(f"backend must be None, a name from {list_backends()} or a Backend, got {backend!r}")
    return get_backend(backend, device=device)


def prepare_on(features, backend=None, device=None, **kwargs) -> PreparedFeatures:
    """:func:`metrics.prepare_features` on a backend. ``backend=None`` and ``device=None`` keep prepared
    features on the backend they were prepared on (numpy for an array); otherwise they are moved.
    ``features`` may be a numpy array, a torch tensor (copied to the host for validation) or prepared."""
    if backend is None and device is None and isinstance(features, PreparedFeatures):
        return prepare_features(features, **kwargs)
    B = resolve_backend(backend, device)
    if not isinstance(features, PreparedFeatures):
        features = to_host(features)
    return B.prepare(prepare_features(features, **kwargs))


def to_host(x):
    """A torch tensor (any device) as a numpy array, for validation; anything else unchanged."""
    if not isinstance(x, np.ndarray) and hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return x


def accepts_backend(fn: Callable) -> Callable:
    """Mark a metric whose signature takes ``backend=`` and ``device=`` (sets ``fn.backends``)."""
    fn.backends = tuple(list_backends())
    return fn
