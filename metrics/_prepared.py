"""Validated inputs with cached derived quantities, shared by the metrics that need the same ones.

Scoring one model with every metric repeats the same expensive steps: converting the features to
float64 and checking them, forming ``X^T X`` (N D^2 / 2), eigendecomposing a D x D Gram matrix
(~1.4 s at D = 2048, and LogME, LogME-F, EMMS, H-score, PARC, NLEEP and TransRate all need one),
z-scoring the label embeddings. :class:`PreparedFeatures` and :class:`PreparedLabelEmbeddings`
hold one validated float64 copy of an input and compute each derived quantity once, on first use::

    F = metrics.prepare_features(X)                   # validates once
    Y = metrics.prepare_label_embeddings(Y_raw)       # (N, E, K), validates and groups rows once
    scores = {name: metrics.get_metric(name)(features=F, labels=y) for name in ...}

Every metric accepts either a plain array or a prepared object for ``features`` (and
``label_embeddings``), with the same result up to floating-point rounding; a plain array is
prepared privately for the one call. The evaluation runner prepares each model's features once.
Cached arrays are read-only, so a metric cannot corrupt what the next one reads; the caller's
arrays are copied (or converted) once and never modified.

Derived quantities (all float64; ``Xc = X - mean``, ``s = zscore_scale()`` the EMMS z-scoring
denominator, population std):

==========================  =============================================  ============================
method                      value                                          used by
==========================  =============================================  ============================
``gram()``                  ``X^T X`` (D, D)                               LogME (primal), SFDA
``centred_gram()``          ``Xc^T Xc`` (D, D)                             H-score(s), TransRate, SFDA
``standardised_gram()``     ``diag(1/s) Xc^T Xc diag(1/s)`` (D, D)         EMMS, TransRate-F
``gram_eigh()``             eigh of the smaller Gram side of X             LogME, LogME-F
``centred_eigh()``          eigh of ``Xc^T Xc`` (ascending)                 H-score, PCA (NLEEP, PARC),
                                                                           TransRate
``standardised_eigh()``     eigh of ``standardised_gram()``                EMMS (ridge="auto")
``centred_dual_gram()``     ``Xc Xc^T`` (N, N)                             N <= D: H-score(s), PARC,
                                                                           EMMS (centred), LW
``standardised_dual_gram()`` ``Xs Xs^T`` (N, N)                            N <= D: EMMS (z-scored)
``centred_spectrum()``      ``centred_eigh`` if N > D, else eigh of the    H-score(s), PARC, EMMS
                            N x N ``centred_dual_gram`` (with ``side``)
``standardised_spectrum()`` the same for the z-scored features             EMMS
``ledoit_wolf()``           Ledoit-Wolf ``(shrinkage, mu)`` (either side)  H-score-LW, EMMS
``principal_components(k)`` top-k PCA scores (either side)                 PARC
==========================  =============================================  ============================

Side: :attr:`PreparedFeatures.side` is ``"primal"`` (D x D) when N > D and ``"dual"`` (N x N)
otherwise (``prepare_features(X, side=...)`` fixes it, for comparisons). The metrics built on the
``*_spectrum()`` methods never form a D x D matrix when N <= D (``std()`` too comes from the rows then);
for N > D nothing changes.

Label embeddings: for classification the per-sample embeddings are class embeddings indexed by the
labels, so the N rows take only C distinct values. :class:`PreparedLabelEmbeddings` finds the
distinct rows exactly (a hash of every row by a fixed random projection, verified by comparing
every row with its group's representative; a hash collision only splits groups, never merges
different rows) and stores ``rows`` (U, E, K), ``counts`` (U,) and ``index`` (N,). Then
``X^T Y = (group sums of X)^T rows`` costs ``N D + U D E K`` instead of ``N D E K`` (25x less for
cars: N = 5000, U = 196), and ``Y^T Y`` is a count-weighted U-row product.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ._linalg import class_sums, logdet_identity_plus_gram, logdet_spd, psd_eigh
from ._validation import check_features, check_label_embeddings, pow2_scale

__all__ = ["PreparedFeatures", "PreparedLabelEmbeddings", "prepare_features", "prepare_label_embeddings"]

#: group identical label-embedding rows only when there are at most this fraction of distinct rows
GROUPING_MAX_FRACTION = 0.5
#: rows per block when accumulating the centred Gram matrix
GRAM_BLOCK_ROWS = 4096
#: z-scoring: a column whose std is at most this fraction of the largest column std (of X, or of one
#: label embedding) is numerically constant and z-scores to exactly 0
ZSCORE_RTOL = 1e-6
#: rows compared per step when verifying a grouping
VERIFY_CHUNK_ROWS = 4096


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class PreparedFeatures:
    """Validated float64 features ``X`` (N, D) and lazily cached derived quantities (see module doc).

    Create with :func:`prepare_features`. ``X`` and every returned array are read-only; copy before
    modifying (``np.array(F.gram())``).
    """

    def __init__(self, features, *, name: str = "features", min_samples: int = 2, side: str | None = None):
        if side not in (None, "primal", "dual"):
            raise ValueError(f"side must be None (automatic), 'primal' or 'dual', got {side!r}")
        self._side = side
        X = check_features(features, name, min_samples=min_samples)
        if isinstance(features, np.ndarray) and np.may_share_memory(X, features):
            X = X.copy()                 # own the data: the caller may modify their array later
        self.X = _readonly(X)
        self._cache: dict[str, object] = {}

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_dims(self) -> int:
        return self.X.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape

    def __repr__(self) -> str:
        return f"PreparedFeatures(N={self.n_samples}, D={self.n_dims}, cached={sorted(self._cache)})"

    def _cached(self, key: str, compute):
        if key not in self._cache:
            value = compute()
            if isinstance(value, np.ndarray):
                _readonly(value)
            elif isinstance(value, tuple):
                for v in value:
                    if isinstance(v, np.ndarray):
                        _readonly(v)
            self._cache[key] = value
        return self._cache[key]

    # ---------------------------------------------------------------- first and second moments
    def mean(self) -> np.ndarray:
        """Column means (D,); a constant column's mean is its value exactly (it centres to exactly 0,
        not to rounding noise that z-scoring or a relative rank cut-off would blow up)."""
        def compute():
            mu = self.X.mean(axis=0)
            constant = self.X.min(axis=0) == self.X.max(axis=0)
            mu[constant] = self.X[0, constant]
            return mu
        return self._cached("mean", compute)

    def centred(self) -> np.ndarray:
        """``Xc = X - mean`` (N, D). Not cached (N x D); callers that need it once compute it here."""
        return self.X - self.mean()

    def gram(self) -> np.ndarray:
        """``X^T X`` (D, D)."""
        return self._cached("gram", lambda: self.X.T @ self.X)

    def centred_gram(self) -> np.ndarray:
        """``Xc^T Xc`` (D, D), formed from the centred data (no cancellation from a large mean).

        Accumulated over blocks of rows centred into one reused buffer (BLAS ``dsyrk``, upper
        triangle, then mirrored): no N x D temporary, whose allocation alone costs about as much as
        the product at N = 50000.
        """
        def compute():
            N, D = self.shape
            mu = self.mean()
            G = np.zeros((D, D), order="F")
            buf = np.empty((min(N, GRAM_BLOCK_ROWS), D))
            for start in range(0, N, GRAM_BLOCK_ROWS):
                block = self.X[start:start + GRAM_BLOCK_ROWS]
                b = buf[:block.shape[0]]
                np.subtract(block, mu, out=b)
                # b.T is an F-contiguous (D, n) view: G += b^T b without copying the block
                G = scipy.linalg.blas.dsyrk(1.0, b.T, beta=1.0, c=G, trans=0, lower=0, overwrite_c=1)
            upper = np.triu(G)
            return upper + np.triu(upper, 1).T
        return self._cached("centred_gram", compute)

    @property
    def side(self) -> str:
        """Which Gram side the spectra (:meth:`centred_spectrum`, :meth:`standardised_spectrum`) and the
        metrics built on them use: ``"primal"`` (D x D) if N > D, else ``"dual"`` (N x N), unless fixed
        by ``prepare_features(..., side=)`` (for comparisons; same results up to rounding). Both have
        the same non-zero eigenvalues (the squared singular values)."""
        if self._side is not None:
            return self._side
        return "primal" if self.n_samples > self.n_dims else "dual"

    def std(self) -> np.ndarray:
        """Population standard deviation of each column (D,): ``sqrt(diag(Xc^T Xc) / N)`` (from the
        centred Gram matrix when N > D, from the centred rows otherwise: no D x D matrix)."""
        def compute():
            if self.side == "primal":
                return np.sqrt(np.diag(self.centred_gram()) / self.n_samples)
            Xc = self.centred()
            return np.sqrt(np.einsum("ij,ij->j", Xc, Xc) / self.n_samples)
        return self._cached("std", compute)

    def zscore_scale(self) -> np.ndarray:
        """EMMS z-scoring denominator (D,): the column std; ``inf`` (the column z-scores to exactly 0)
        for a numerically constant column, std <= ``ZSCORE_RTOL`` x the largest column std. The
        published code divides by ``std + 1e-8`` (``_linalg.ZSCORE_EPS``), which makes the score
        depend on the features' units (at scale 1e-10 every column became "constant"); the relative
        cut keeps z-scoring invariant to the units and to each column's scale (within a 1e6 range),
        still drops noise columns (MiniLM label embeddings have dimensions of std 1e-33), and differs
        from the published value by ~1e-8 / std relative."""
        def compute():
            std = self.std()
            return np.where(std > ZSCORE_RTOL * std.max(), std, np.inf)
        return self._cached("zscore_scale", compute)

    def zscored(self) -> np.ndarray:
        """``(X - mean) / zscore_scale()`` (N, D), a new array (not cached)."""
        Z = self.centred()
        Z /= self.zscore_scale()
        return Z

    def standardised_gram(self) -> np.ndarray:
        """``Xs^T Xs`` (D, D) of the z-scored features, from :meth:`centred_gram`."""
        def compute():
            s = self.zscore_scale()
            return self.centred_gram() / np.outer(s, s)
        return self._cached("standardised_gram", compute)

    # ---------------------------------------------------------------- eigendecompositions
    def gram_eigh(self) -> tuple[np.ndarray, np.ndarray, str]:
        """``(sigma, vecs, side)`` of the smaller Gram matrix of X: ``X^T X`` (side "primal") if
        N > D, else the N x N ``X X^T`` (side "dual"). The non-zero eigenvalues of both are the squared
        singular values of X; tiny ones are set to 0 (:func:`_linalg.psd_eigh`)."""
        def compute():
            if self.n_samples > self.n_dims:
                sigma, vecs = self._eigh(self.gram())
                return sigma, vecs, "primal"
            sigma, vecs = self._eigh(self.X @ self.X.T, overwrite=True)
            return sigma, vecs, "dual"
        return self._cached("gram_eigh", compute)

    def centred_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lam ascending (D,), V (D, D))`` of ``Xc^T Xc`` (tiny eigenvalues set to 0)."""
        return self._cached("centred_eigh", lambda: self._eigh(self.centred_gram()))

    def standardised_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sigma ascending (D,), V (D, D))`` of :meth:`standardised_gram`."""
        return self._cached("standardised_eigh", lambda: self._eigh(self.standardised_gram()))

    # ---------------------------------------------------------------- N x N (dual) side
    def centred_dual_gram(self) -> np.ndarray:
        """``Xc Xc^T`` (N, N), the centred kernel matrix (N^2 D)."""
        def compute():
            Xc = self.centred()
            return Xc @ Xc.T
        return self._cached("centred_dual_gram", compute)

    def centred_spectrum(self) -> tuple[np.ndarray, np.ndarray, str]:
        """``(sigma ascending, vecs, side)`` of the centred scatter on the smaller side.

        ``"primal"`` (N > D): :meth:`centred_eigh`, ``vecs = V`` (D, D) with ``Xc^T Xc = V diag(sigma) V^T``.
        ``"dual"`` (N <= D): eigh of :meth:`centred_dual_gram`, ``vecs = U`` (N, N) with
        ``Xc Xc^T = U diag(sigma) U^T``; for ``sigma_i > 0`` the principal axis is
        ``v_i = Xc^T u_i / sqrt(sigma_i)`` and ``Xc v_i = sqrt(sigma_i) u_i``. Tiny eigenvalues are 0.
        """
        if self.side == "primal":
            sigma, V = self.centred_eigh()
            return sigma, V, "primal"
        sigma, U = self._cached("centred_dual_eigh", lambda: self._eigh(np.array(self.centred_dual_gram()),
                                                                     overwrite=True))
        return sigma, U, "dual"

    def standardised_dual_gram(self) -> np.ndarray:
        """``Xs Xs^T`` (N, N) of the z-scored features ``Xs = Xc / zscore_scale()``."""
        def compute():
            Xs = self.zscored()
            return Xs @ Xs.T
        return self._cached("standardised_dual_gram", compute)

    def standardised_spectrum(self) -> tuple[np.ndarray, np.ndarray, str]:
        """``(sigma ascending, vecs, side)`` of the z-scored scatter on the smaller side: ``vecs = V``
        (D, D) of :meth:`standardised_gram` if N > D, else ``U`` (N, N) of :meth:`standardised_dual_gram`
        (the left singular vectors of ``Xs``; see :meth:`centred_spectrum`)."""
        if self.side == "primal":
            sigma, V = self.standardised_eigh()
            return sigma, V, "primal"
        sigma, U = self._cached("standardised_dual_eigh",
                                lambda: self._eigh(np.array(self.standardised_dual_gram()), overwrite=True))
        return sigma, U, "dual"

    def ledoit_wolf(self, *, standardised: bool = False) -> tuple[float, float]:
        """Ledoit-Wolf shrinkage ``a`` of the covariance ``S = Z^T Z / N`` and its target scale
        ``mu = tr S / D`` (scikit-learn's ``ledoit_wolf_shrinkage``), for ``Z = Xc`` (centred) or the
        z-scored ``Xs`` (``standardised``). Shrunk covariance ``(1 - a) S + a mu I``.

        ``delta = ||S - mu I||_F^2 / D``, ``beta = min(delta, (sum_i ||z_i||^4 / N - ||S||_F^2) / (D N))``,
        ``a = beta / delta``. ``||S||_F`` and ``diag S`` come from the cached Gram matrix on the smaller
        side (``||Z^T Z||_F = ||Z Z^T||_F``); scikit-learn's ``sum (X^2)^T (X^2)`` (another N D^2
        product) equals ``sum_i ||z_i||^4`` (O(N D)).
        """
        def compute():
            N, D = self.shape
            # in exact power-of-4 units where max |Z| ~ 1: the 4th powers below overflowed beyond
            # |X| ~ 1e77 and underflowed below 1e-77 (mu is returned in the caller's units)
            unit, row_sq, col_sq = self._scaled_square_norms(standardised, columns=self.side != "primal")
            u2 = unit * unit
            if self.side == "primal":
                S = (self.standardised_gram() if standardised else self.centred_gram()) * u2 / N
                diag = np.diag(S)
            else:
                S = (self.standardised_dual_gram() if standardised else self.centred_dual_gram()) * u2 / N
                diag = col_sq / N
            delta_ = float(np.einsum("ij,ij->", S, S))
            mu = diag.sum() / D
            if D == 1:
                return 0.0, float(mu) / u2
            beta = (float(row_sq @ row_sq) / N - delta_) / (D * N)
            delta = (delta_ - 2.0 * mu * diag.sum() + D * mu ** 2) / D
            beta = min(beta, delta)
            return (0.0 if beta == 0 else float(beta / delta)), float(mu) / u2
        return self._cached("ledoit_wolf_standardised" if standardised else "ledoit_wolf", compute)

    def principal_components(self, k: int) -> np.ndarray:
        """Scores ``Xc V_k`` (N, k) on the top-k principal axes (k <= number of positive eigenvalues),
        from :meth:`centred_spectrum` (either side). Signs as scikit-learn >= 1.5
        (``svd_flip(u_based_decision=False)``): the largest-magnitude entry of each axis is positive."""
        sigma, vecs, side = self.centred_spectrum()
        top = np.arange(sigma.shape[0] - 1, sigma.shape[0] - 1 - k, -1)
        if k > 0 and sigma[top[-1]] <= 0:
            raise ValueError(f"principal_components: asked for {k} components but the centred features "
                             f"have rank {int(np.count_nonzero(sigma > 0))}")
        if side == "primal":
            V = vecs[:, top]
            scores = None
        else:
            root = np.sqrt(sigma[top])
            scores = vecs[:, top] * root                          # Xc v_i = sqrt(sigma_i) u_i
            V = self.centred().T @ (vecs[:, top] / root)          # v_i = Xc^T u_i / sqrt(sigma_i)
        flip = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(k)])
        flip[flip == 0] = 1.0
        return self.centred() @ (V * flip) if scores is None else scores * flip

    # ---------------------------------------------------------------- backend operations
    # the heavy steps other backends (metrics.torch_backend) override; the rest is shared
    def _eigh(self, M: np.ndarray, *, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_linalg.psd_eigh` of a symmetric PSD ``M`` (n, n): ``(sigma ascending, V)``."""
        return psd_eigh(M, overwrite=overwrite)

    def _scaled_square_norms(self, standardised: bool, *, columns: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
        """``(unit, ||z_i||^2 (N,), ||Z[:, j]||^2 (D,) or None)`` of ``Z = unit * (Xs or Xc)``, with
        ``unit = pow2_scale(Xs or Xc)`` (z-scored if ``standardised``, else centred); column norms only
        if ``columns``."""
        Z = self.zscored() if standardised else self.centred()
        unit = pow2_scale(Z)
        Z *= unit
        return unit, np.einsum("ij,ij->i", Z, Z), (np.einsum("ij,ij->j", Z, Z) if columns else None)

    def transpose_matmul(self, R: np.ndarray, *, centred: bool = False) -> np.ndarray:
        """``X^T R`` (or ``Xc^T R`` if ``centred``), (D, M) for ``R`` (N, M)."""
        return (self.centred() if centred else self.X).T @ R

    def centred_gram_logdet(self, divisor: float) -> float:
        """``log det(I_D + Xc^T Xc / divisor)`` from :meth:`centred_gram` (D x D; for N > D)."""
        M = self.centred_gram() / divisor
        M[np.diag_indices_from(M)] += 1.0
        return logdet_spd(M)

    def group_logdets(self, index: np.ndarray, scales: np.ndarray, *, whole_scale: float | None = None) -> np.ndarray:
        """``log det(I + scales[g] Xc_g^T Xc_g)`` (G,) for the centred rows ``Xc_g`` of each group
        ``g = 0..G-1`` in ``index`` (N,), each on its smaller Gram side
        (:func:`_linalg.logdet_identity_plus_gram`); with ``whole_scale``, the same for all N rows (in
        group order) is appended (G + 1,)."""
        n_groups = scales.shape[0]
        order = np.argsort(index, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=n_groups))])
        Xs = self.X[order] - self.mean()
        out = [logdet_identity_plus_gram(Xs[bounds[g]:bounds[g + 1]], scales[g]) for g in range(n_groups)]
        if whole_scale is not None:
            out.append(logdet_identity_plus_gram(Xs, whole_scale))
        return np.array(out)

    # ---------------------------------------------------------------- helpers
    def group_sums(self, index: np.ndarray, n_groups: int, *, centred: bool = False) -> np.ndarray:
        """``(n_groups, D)`` sums of the rows of X (or of ``Xc``) per group id in ``index``."""
        sums = class_sums(self.X, index, n_groups)
        if centred:
            counts = np.bincount(index, minlength=n_groups).astype(np.float64)
            sums -= counts[:, None] * self.mean()
        return sums


def prepare_features(features, *, min_samples: int = 2, name: str = "features",
                     side: str | None = None) -> PreparedFeatures:
    """Return ``features`` as a :class:`PreparedFeatures` (the same object if it already is one).

    Validates a plain array (finite, 2-D, at least ``min_samples`` rows; ``ValueError`` otherwise).
    ``side`` fixes the Gram side of a new object (:attr:`PreparedFeatures.side`; default automatic).
    """
    if not isinstance(features, PreparedFeatures):
        return PreparedFeatures(features, name=name, min_samples=min_samples, side=side)
    if features.n_samples < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got {features.n_samples}")
    return features


class PreparedLabelEmbeddings:
    """Validated per-sample label embeddings (N, E, K), stored as their distinct rows.

    ``rows`` (U, E, K) float64, ``counts`` (U,) and ``index`` (N,) with ``Y[i] == rows[index[i]]``
    exactly; ``grouped`` is True when U < N (U = N, ``index = arange(N)`` otherwise). Create with
    :func:`prepare_label_embeddings`.
    """

    def __init__(self, label_embeddings, *, name: str = "label_embeddings"):
        # validate in the input's own float dtype, group the rows, then convert only the distinct ones
        raw = check_label_embeddings(label_embeddings, None, name, convert=False)
        N = raw.shape[0]
        groups = _distinct_rows(raw.reshape(N, -1))
        if groups is None:
            rows = np.array(raw, dtype=np.float64)                      # always a private copy
            index, counts = np.arange(N), np.ones(N, dtype=np.int64)
        else:
            first, index, counts = groups
            rows = raw[first].astype(np.float64)
        self._set(rows, index, counts)

    def _set(self, rows: np.ndarray, index: np.ndarray, counts: np.ndarray) -> None:
        self.rows = _readonly(np.ascontiguousarray(rows))
        self.index = _readonly(index.astype(np.int64, copy=False))
        self.counts = _readonly(counts.astype(np.int64, copy=False))
        self.n_samples = self.index.shape[0]
        self._zscored = None

    @property
    def grouped(self) -> bool:
        return self.rows.shape[0] < self.n_samples

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_samples,) + self.rows.shape[1:]

    def __repr__(self) -> str:
        N, E, K = self.shape
        return f"PreparedLabelEmbeddings(N={N}, E={E}, K={K}, distinct rows={self.rows.shape[0]})"

    def full(self) -> np.ndarray:
        """The per-sample (N, E, K) array (a new array when grouped)."""
        return self.rows[self.index] if self.grouped else self.rows

    def zscored(self) -> "PreparedLabelEmbeddings":
        """Every column z-scored over the N samples (population std; a numerically constant column, std
        <= ``ZSCORE_RTOL`` x the embedding's largest, becomes exactly 0, as
        :meth:`PreparedFeatures.zscore_scale`), same grouping.
        ``ValueError`` if an embedding is constant across samples (z-scoring leaves nothing)."""
        if self._zscored is None:
            w = self.counts.astype(np.float64)[:, None, None] / self.n_samples
            mean = (w * self.rows).sum(axis=0)
            constant = self.rows.min(axis=0) == self.rows.max(axis=0)      # exact: centre to exactly 0
            mean[constant] = self.rows[0][constant]
            centred = self.rows - mean
            std = np.sqrt((w * centred * centred).sum(axis=0))
            flat = np.flatnonzero(np.all(constant, axis=0))
            if flat.size:
                raise ValueError(f"label embeddings are constant across samples (embedding(s) k = "
                                 f"{flat.tolist()} give every sample the same vector): they carry no label "
                                 "information, and a fit to them is exact for every model")
            out = object.__new__(PreparedLabelEmbeddings)      # already validated: no __init__
            out._set(centred / np.where(std > ZSCORE_RTOL * std.max(axis=0), std, np.inf), self.index, self.counts)
            self._zscored = out
        return self._zscored

    def cross(self, F: PreparedFeatures, *, scale: np.ndarray | None = None, centred: bool = False) -> np.ndarray:
        """``X^T Y`` as (D, E K) (``Xc`` if ``centred``; rows of the result divided by ``scale``)."""
        N, E, K = self.shape
        if F.n_samples != N:
            raise ValueError(f"label embeddings have {N} samples but the features have {F.n_samples}")
        R = self.rows.reshape(self.rows.shape[0], E * K)
        if self.grouped:
            B = F.group_sums(self.index, self.rows.shape[0], centred=centred).T @ R
        else:
            B = F.transpose_matmul(R, centred=centred)
        if scale is not None:
            B /= scale[:, None]
        return B

    def column_gram(self, k: int | None = None) -> np.ndarray:
        """``Y_k^T Y_k`` (E, E) over the N samples for embedding ``k`` (count-weighted rows)."""
        R = self.rows[:, :, k]
        return R.T @ (R * self.counts[:, None].astype(np.float64))

    def embedding_gram(self) -> np.ndarray:
        """``H_kl = <Y_k, Y_l>_F`` (K, K) over all N samples and E dims."""
        U, E, K = self.rows.shape
        Rw = self.rows * np.sqrt(self.counts.astype(np.float64))[:, None, None]
        Rv = Rw.reshape(U * E, K)
        return Rv.T @ Rv

    def column_sq_norms(self) -> np.ndarray:
        """``sum_i Y[i, j]^2`` for each of the E K flattened columns (E K,)."""
        U = self.rows.shape[0]
        R = self.rows.reshape(U, -1)
        return self.counts.astype(np.float64) @ (R * R)


def _distinct_rows(A: np.ndarray, probe: np.ndarray | None = None):
    """``(first (U,), index (N,), counts (U,))`` grouping identical rows of ``A`` (N, M), or None.

    Rows are hashed by a projection on ``probe`` (M,) (default: fixed random); equal rows get equal
    hashes. The grouping is
    verified exactly (every row equals its group's first row); if two different rows collide, or
    there are more than ``GROUPING_MAX_FRACTION * N`` groups, None is returned (no grouping).
    """
    N, M = A.shape
    if N < 4:
        return None
    if probe is None:
        probe = np.random.default_rng(20231).standard_normal(M)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float32)                       # float16: hash in float32 (equal rows stay equal)
    keys = A @ probe.astype(A.dtype)
    _, first, index, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    if first.size > GROUPING_MAX_FRACTION * N:
        return None
    index = index.reshape(-1)
    representative = first[index]
    for start in range(0, N, VERIFY_CHUNK_ROWS):     # exact check, in chunks (bounded memory)
        rows = slice(start, start + VERIFY_CHUNK_ROWS)
        if not np.array_equal(A[rows], A[representative[rows]]):
            return None
    return first, index, counts


def prepare_label_embeddings(label_embeddings, n_samples: int | None = None, *,
                             name: str = "label_embeddings") -> PreparedLabelEmbeddings:
    """Return ``label_embeddings`` as :class:`PreparedLabelEmbeddings` (the same object if it is one).

    Accepts an (N, E, K) array or a list of K (N, E) arrays (see ``check_label_embeddings``);
    ``n_samples`` (the features' N) is checked when given.
    """
    P = label_embeddings if isinstance(label_embeddings, PreparedLabelEmbeddings) else \
        PreparedLabelEmbeddings(label_embeddings, name=name)
    if n_samples is not None and P.n_samples != n_samples:
        raise ValueError(f"{name} has {P.n_samples} samples but the features have {n_samples}")
    return P
