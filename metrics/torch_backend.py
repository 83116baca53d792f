"""The ``"torch"`` metrics backend: the heavy steps of :class:`metrics.PreparedFeatures` in PyTorch.

:class:`TorchPreparedFeatures` overrides exactly the backend operations of
:class:`metrics.PreparedFeatures` (the formulas stay in the metric modules, written once):

==============================  ==============================================  =====================
operation                       value                                           cost
==============================  ==============================================  =====================
``mean()``                      column means (constant columns exact)           N D
``gram()``                      ``X^T X``                                       N D^2
``centred_gram()``              ``Xc^T Xc`` over blocks of centred rows          N D^2
``centred_dual_gram()`` etc.    ``Xc Xc^T``, ``Xs Xs^T`` (N <= D)               N^2 D
``_eigh(M)``                    ``torch.linalg.eigh``, tiny eigenvalues -> 0     n^3
``transpose_matmul(R)``         ``X^T R`` / ``Xc^T R`` (EMMS, LogME targets)     N D M
``group_sums()``                per-group row sums (:func:`group_sum`)          N D (CUDA: N D G)
``group_logdets()``             TransRate's per-class ``log det(I + a Z Z^T)``  sum_c n_c^2 D
``centred_gram_logdet()``       ``log det(I + Xc^T Xc / d)`` (LU)               D^3
``_scaled_square_norms()``      Ledoit-Wolf row / column norms                  N D
==============================  ==============================================  =====================

Results come back as float64 numpy arrays (cached, read-only, as for numpy); matrices this object
produced are kept on the device too, so e.g. the eigendecomposition of the centred Gram matrix does
not upload it again. :class:`TorchBackend` also computes LEEP's and NCE's joint tables. On CUDA the
group sums are one-hot products (deterministic; ``index_add_`` adds with atomics there). float64
(default) agrees with numpy to rounding (the tests: 1e-8); float32 eigenvalues below
``n * eps_float32 * max`` count as 0, and the scores are approximate (~1e-4 relative).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ._linalg import checked_logdet, zero_tiny_eigenvalues
from ._prepared import PreparedFeatures, _readonly
from ._validation import EncodedLabels, pow2_scale

__all__ = ["TorchBackend", "TorchPreparedFeatures", "DTYPES", "group_sum"]

#: accepted compute dtypes
DTYPES = (torch.float64, torch.float32)
#: rows per block when accumulating the centred Gram matrix / centred products on the device
BLOCK_ROWS = 16384
#: groups per one-hot block in :func:`group_sum` on CUDA (a block is ONE_HOT_GROUPS x N)
ONE_HOT_GROUPS = 1024


def group_sum(index: torch.Tensor, n_groups: int, A: torch.Tensor, *, one_hot: bool) -> torch.Tensor:
    """``(n_groups, M)`` sums of the rows of ``A`` (N, M) per group id in ``index`` (N,).

    ``one_hot``: as products ``1[index == g] @ A`` over blocks of groups (deterministic on CUDA, where
    ``index_add_`` adds with atomics in a varying order); else ``index_add_`` (sequential on the CPU).
    """
    if not one_hot:
        return torch.zeros((n_groups, A.shape[1]), dtype=A.dtype, device=A.device).index_add_(0, index, A)
    out = torch.empty((n_groups, A.shape[1]), dtype=A.dtype, device=A.device)
    for start in range(0, n_groups, ONE_HOT_GROUPS):
        groups = torch.arange(start, min(start + ONE_HOT_GROUPS, n_groups), device=A.device)
        out[start:start + groups.shape[0]] = (index[None, :] == groups[:, None]).to(A.dtype) @ A
    return out


def _check_device(device) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for but CUDA is not available (torch.cuda.is_available() "
                             "is False); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: the torch backend supports 'cpu' and 'cuda' devices")
    return dev


def _check_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float64
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {[str(d) for d in DTYPES]} (torch dtypes), got {dtype!r}")
    return dtype


class TorchBackend:
    """PyTorch on ``device`` (None: CUDA when available, else CPU) in ``dtype`` (default float64).

    Implements the interface of :class:`metrics.Backend` (``name``, ``numpy``, ``key``, ``prepare``) plus
    ``leep`` / ``nce``; made by ``metrics.get_backend("torch", ...)`` (this module does not import
    ``metrics._backend``, which imports it lazily)."""

    name = "torch"
    numpy = False

    def __init__(self, device=None, dtype=None):
        self.device = _check_device(device)
        self.dtype = _check_dtype(dtype)
        self.eps = float(torch.finfo(self.dtype).eps)
        self.one_hot = self.device.type == "cuda"          # deterministic group sums (group_sum)

    @property
    def key(self) -> str:
        return f"torch:{self.device}:{str(self.dtype).replace('torch.', '')}"

    def __repr__(self) -> str:
        return f"Backend({self.key})"

    def prepare(self, F: PreparedFeatures) -> "TorchPreparedFeatures":
        if isinstance(F, TorchPreparedFeatures) and F.backend.key == self.key:
            return F
        return F._cached(f"backend:{self.key}", lambda: TorchPreparedFeatures(F, self))

    # ---------------------------------------------------------------- tensors
    def tensor(self, a: np.ndarray) -> torch.Tensor:
        """``a`` on the device in the backend's dtype (shares memory with ``a`` where possible: never
        written to)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # read-only numpy arrays (never written)
            return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def index(self, a: np.ndarray) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.as_tensor(a, dtype=torch.int64, device=self.device)

    @staticmethod
    def numpy_array(t: torch.Tensor) -> np.ndarray:
        """A new float64 numpy array from ``t``."""
        return t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()

    # ---------------------------------------------------------------- source-probability metrics
    def leep(self, P: np.ndarray, enc: EncodedLabels) -> float:
        """:func:`metrics.leep.leep_from_encoded` on the device (validated ``P`` (N, Cs))."""
        Pt, idx = self.tensor(P), self.index(enc.index)
        N = Pt.shape[0]
        joint = group_sum(idx, enc.n_classes, Pt, one_hot=self.one_hot) / N
        marginal = joint.sum(dim=0)
        cond = torch.where(marginal > 0, joint / torch.where(marginal > 0, marginal, 1.0), 0.0)
        expected = (Pt * cond[idx]).sum(dim=1)
        return float(torch.log(expected).mean())

    def nce(self, enc_y: EncodedLabels, enc_z: EncodedLabels) -> float:
        """:func:`metrics.nce.nce` on the device (encoded target and source labels)."""
        N, Cz = enc_y.index.shape[0], enc_z.n_classes
        flat = self.index(enc_y.index) * Cz + self.index(enc_z.index)
        joint = torch.bincount(flat, minlength=enc_y.n_classes * Cz).reshape(enc_y.n_classes, Cz).to(self.dtype) / N
        p_z = joint.sum(dim=0).expand_as(joint)
        nz = joint > 0
        return float(torch.sum(joint[nz] * torch.log(joint[nz] / p_z[nz])))


class TorchPreparedFeatures(PreparedFeatures):
    """:class:`metrics.PreparedFeatures` whose heavy steps run on a :class:`TorchBackend` (module doc).

    Made by ``backend.prepare(F)`` from validated features ``F`` (shares its read-only ``X``)."""

    def __init__(self, F: PreparedFeatures, backend: TorchBackend):
        self._side, self.X, self._cache = F._side, F.X, {}
        self.backend = backend
        self._tensors: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
        self._X_t = None

    def __repr__(self) -> str:
        return f"TorchPreparedFeatures(N={self.n_samples}, D={self.n_dims}, {self.backend.key}, cached={sorted(self._cache)})"

    # ---------------------------------------------------------------- tensors
    @property
    def X_t(self) -> torch.Tensor:
        """``X`` (N, D) on the device."""
        if self._X_t is None:
            self._X_t = self.backend.tensor(self.X)
        return self._X_t

    def _out(self, t: torch.Tensor) -> np.ndarray:
        """``t`` as a read-only float64 numpy array, remembered with its tensor (no re-upload)."""
        a = _readonly(self.backend.numpy_array(t))
        self._tensors[id(a)] = (a, t)
        return a

    def _t(self, a: np.ndarray) -> torch.Tensor:
        hit = self._tensors.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        return self.backend.tensor(a)

    def _mean_t(self) -> torch.Tensor:
        return self._t(self.mean())

    def _centred_blocks(self, scale: torch.Tensor | None = None):
        """``(start, Xc[start:start + BLOCK_ROWS])`` (divided by ``scale`` if given), block by block."""
        mu = self._mean_t()
        for start in range(0, self.n_samples, BLOCK_ROWS):
            b = self.X_t[start:start + BLOCK_ROWS] - mu
            yield start, (b if scale is None else b / scale)

    @staticmethod
    def _sym(G: torch.Tensor) -> torch.Tensor:
        return 0.5 * (G + G.T)

    # ---------------------------------------------------------------- overridden operations
    def mean(self) -> np.ndarray:
        def compute():
            X = self.X_t
            mu = X.mean(dim=0)
            constant = X.amin(dim=0) == X.amax(dim=0)
            return self._out(torch.where(constant, X[0], mu))
        return self._cached("mean", compute)

    def gram(self) -> np.ndarray:
        return self._cached("gram", lambda: self._out(self._sym(self.X_t.T @ self.X_t)))

    def centred_gram(self) -> np.ndarray:
        def compute():
            D = self.n_dims
            G = torch.zeros((D, D), dtype=self.backend.dtype, device=self.backend.device)
            for _, b in self._centred_blocks():
                G.addmm_(b.T, b)
            return self._out(self._sym(G))
        return self._cached("centred_gram", compute)

    def _zscore_t(self) -> torch.Tensor:
        return self._t(self.zscore_scale())

    def centred_dual_gram(self) -> np.ndarray:
        def compute():
            Xc = self.X_t - self._mean_t()
            return self._out(self._sym(Xc @ Xc.T))
        return self._cached("centred_dual_gram", compute)

    def standardised_dual_gram(self) -> np.ndarray:
        def compute():
            Xs = (self.X_t - self._mean_t()) / self._zscore_t()
            return self._out(self._sym(Xs @ Xs.T))
        return self._cached("standardised_dual_gram", compute)

    def _eigh(self, M: np.ndarray, *, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
        sigma, V = torch.linalg.eigh(self._t(M))
        return zero_tiny_eigenvalues(self.backend.numpy_array(sigma), self.backend.eps), self.backend.numpy_array(V)

    def _scaled_square_norms(self, standardised: bool, *, columns: bool):
        Z = self.X_t - self._mean_t()
        if standardised:
            Z = Z / self._zscore_t()
        top = float(Z.abs().max()) if Z.numel() else 0.0
        unit = pow2_scale(np.array([top]))
        Z *= unit
        Z2 = Z * Z
        row_sq = self.backend.numpy_array(Z2.sum(dim=1))
        return unit, row_sq, (self.backend.numpy_array(Z2.sum(dim=0)) if columns else None)

    def transpose_matmul(self, R: np.ndarray, *, centred: bool = False) -> np.ndarray:
        Rt = self._t(R)
        if not centred:
            return self.backend.numpy_array(self.X_t.T @ Rt)      # a new, writable array (as numpy's)
        out = torch.zeros((self.n_dims, Rt.shape[1]), dtype=self.backend.dtype, device=self.backend.device)
        for start, b in self._centred_blocks():
            out.addmm_(b.T, Rt[start:start + b.shape[0]])
        return self.backend.numpy_array(out)

    def group_sums(self, index: np.ndarray, n_groups: int, *, centred: bool = False) -> np.ndarray:
        idx = self.backend.index(index)
        sums = group_sum(idx, n_groups, self.X_t, one_hot=self.backend.one_hot)
        if centred:
            counts = torch.bincount(idx, minlength=n_groups).to(self.backend.dtype)
            sums -= counts[:, None] * self._mean_t()
        return self.backend.numpy_array(sums)

    def _logdet_spd(self, M: torch.Tensor) -> float:
        sign, logdet = torch.linalg.slogdet(M)
        return checked_logdet(float(sign), float(logdet))

    def _logdet_identity_plus_gram(self, Z: torch.Tensor, scale: float) -> float:
        n, d = Z.shape
        M = scale * (Z @ Z.T if n < d else Z.T @ Z)
        M.diagonal().add_(1.0)
        return self._logdet_spd(M)

    def group_logdets(self, index: np.ndarray, scales: np.ndarray, *, whole_scale: float | None = None) -> np.ndarray:
        n_groups = scales.shape[0]
        order = np.argsort(index, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=n_groups))])
        Xs = self.X_t[self.backend.index(order)] - self._mean_t()
        out = [self._logdet_identity_plus_gram(Xs[bounds[g]:bounds[g + 1]], float(scales[g])) for g in range(n_groups)]
        if whole_scale is not None:
            out.append(self._logdet_identity_plus_gram(Xs, float(whole_scale)))
        return np.array(out)

    def centred_gram_logdet(self, divisor: float) -> float:
        M = self._t(self.centred_gram()) / divisor
        M.diagonal().add_(1.0)
        return self._logdet_spd(M)
