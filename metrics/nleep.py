"""NLEEP: Gaussian-mixture LEEP (Li et al., "Ranking Neural Checkpoints", CVPR 2021).

The source classifier of LEEP is replaced by a Gaussian mixture fitted on the target features::

    Z = PCA(X) keeping 80% of the variance                 (N, d)
    GMM with  round(component_ratio * C)  full-covariance components on Z
    P = GMM posteriors p(component | z_i)                  (N, n_components)
    nleep = LEEP(P, y)   (see metrics.leep)

``component_ratio`` is 5 in the paper (the EMMS code uses 1 for food and pets). The GMM fit is
random: ``random_state`` seeds it (default 0) so the score is deterministic. Departure from the
EMMS code: it reports ``mean_i P(y_i | x_i)`` without the log; here the log is kept (LEEP's
definition, as in the NLEEP paper), and class ids are remapped.
"""
from __future__ import annotations

from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from ._validation import check_features, check_labels, check_positive
from .leep import leep_from_encoded
from .registry import register_metric

__all__ = ["nleep"]

#: fraction of the feature variance kept by the PCA step
NLEEP_VARIANCE = 0.8


@register_metric("nleep", requires=("features", "labels"))
def nleep(features, labels, *, component_ratio: float = 5, random_state: int = 0) -> float:
    """NLEEP score (<= 0, higher is better)."""
    X = check_features(features)
    enc = check_labels(labels, X.shape[0])
    component_ratio = check_positive(component_ratio, "component_ratio")
    n_components = max(1, int(round(component_ratio * enc.n_classes)))
    if n_components > X.shape[0]:
        raise ValueError(f"NLEEP needs at least as many samples as GMM components: "
                         f"{n_components} components (component_ratio={component_ratio:g} x {enc.n_classes} "
                         f"classes) for {X.shape[0]} samples")
    Z = PCA(n_components=NLEEP_VARIANCE, svd_solver="full").fit_transform(X)
    gmm = GaussianMixture(n_components=n_components, random_state=random_state).fit(Z)
    return leep_from_encoded(gmm.predict_proba(Z), enc)
