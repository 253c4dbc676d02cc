"""Ridge classification in closed form, its penalty chosen by exact leave-one-out error.

:func:`fit_ridge` fits a linear classifier to features by least squares on ``+1``/``-1``
class targets (as scikit-learn's ``RidgeClassifierCV``), chooses the penalty among
``alphas`` by the leave-one-out squared error that one eigendecomposition gives for every
penalty at once, and then scales the scores into logits: one temperature, chosen by the
leave-one-out predictions' cross-entropy, so that ``softmax(logits)`` are usable
probabilities and not the near-uniform ones raw ridge scores would give.

This is how random-kernel transforms (ROCKET and its successors) are classified: with
thousands of features and tens to thousands of examples, it is exact, needs no learning
rate or epochs, and costs one ``n x n`` (or ``p x p``) eigendecomposition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DEFAULT_ALPHAS", "RidgeFit", "fit_ridge"]

DEFAULT_ALPHAS: tuple[float, ...] = tuple(10.0 ** (-3 + i / 2) for i in range(17))
"""The penalties tried by default: 17 from 1e-3 to 1e5, half a decade apart (ROCKET's ten from
1e-3 to 1e3 chose their largest on a third of the UCR development sets; the wider grid was
better or equal on every one measured)."""

_TEMPERATURES = torch.logspace(-1, 3, 81, dtype=torch.float64)  # scales tried for the logits


@dataclass(frozen=True)
class RidgeFit:
    """The fitted classifier: ``logits = features @ weight.T + bias``.

    Attributes:
        weight: ``(num_classes, num_features)``, float64, the temperature included.
        bias: ``(num_classes,)``, float64, the temperature included.
        alpha: the penalty chosen.
        temperature: the factor the ridge scores were multiplied by to become logits.
        loo_accuracy: the leave-one-out accuracy at the chosen penalty.
    """

    weight: Tensor
    bias: Tensor
    alpha: float
    temperature: float
    loo_accuracy: float


def fit_ridge(features: Tensor, y: Tensor, num_classes: int, alphas: Sequence[float] = DEFAULT_ALPHAS) -> RidgeFit:
    """Fit a ridge classifier to ``features`` ``(n, p)`` and integer labels ``y`` ``(n,)`` in ``[0, num_classes)``.

    The features should be standardised (the penalty treats them alike). Targets are
    ``+1`` for the true class and ``-1`` otherwise, centred, with an unpenalised
    intercept. The Gram matrix (``n x n`` when ``n <= p``, else ``p x p``) is formed in
    the features' dtype on their device and eigendecomposed in float64; the features are
    copied once (centred), not converted.

    Raises:
        ValueError: a bad shape, label, penalty, or non-finite feature (each named).
    """
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"features must have shape (n >= 2, num_features); got {tuple(features.shape)}")
    if y.shape != (len(features),) or y.dtype.is_floating_point:
        raise ValueError(f"y must be integer labels of shape ({len(features)},); got {y.dtype} {tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}); got labels from {int(y.min())} to {int(y.max())}")
    if not alphas or any(not (isinstance(a, (int, float)) and a > 0 and math.isfinite(a)) for a in alphas):
        raise ValueError(f"alphas must be positive finite numbers; got {list(alphas)!r}")
    if not features.is_floating_point() or not bool(torch.isfinite(features).all()):
        raise ValueError(f"features must be finite floating-point numbers; got {features.dtype} with NaN or Inf")
    n, p = features.shape
    feature_mean = features.mean(dim=0, dtype=torch.float64)  # (p,)
    z = features - feature_mean.to(features.dtype)  # (n, p) in the features' dtype: the one copy of them
    targets = torch.full((n, num_classes), -1.0, dtype=torch.float64, device=z.device)
    targets[torch.arange(n, device=z.device), y.to(z.device)] = 1.0
    target_mean = targets.mean(dim=0)
    t = targets - target_mean  # (n, C)
    alpha_list = torch.tensor([float(a) for a in alphas], dtype=torch.float64, device=z.device)
    if n <= p:  # dual: z z^T = Q diag(v) Q^T; hat = Q diag(v / (v + a)) Q^T
        v, q = torch.linalg.eigh((z @ z.T).double())  # (n,), (n, n): the product in the features' dtype
        qt = q.T @ t  # (n, C)
        shrink = v.clamp(min=0)[None, :] / (v.clamp(min=0)[None, :] + alpha_list[:, None])  # (A, n)
        fitted = torch.stack([q @ (row[:, None] * qt) for row in shrink])  # (A, n, C)
        leverage = ((q * q) @ shrink.T).T  # (A, n)
    else:  # primal: z^T z = V diag(v) V^T
        v, vecs = torch.linalg.eigh((z.T @ z).double())  # (p,), (p, p)
        u = z.double() @ vecs  # (n, p)
        ut = u.T @ t  # (p, C)
        inverse = 1.0 / (v.clamp(min=0)[None, :] + alpha_list[:, None])  # (A, p)
        fitted = torch.stack([u @ (row[:, None] * ut) for row in inverse])  # (A, n, C)
        leverage = ((u * u) @ inverse.T).T  # (A, n)
    # leave-one-out residuals of every penalty at once; the intercept's own leverage is 1/n
    residual = (t[None] - fitted) / (1.0 - leverage - 1.0 / n).clamp(min=1e-12)[:, :, None]  # (A, n, C)
    best = int(torch.argmin((residual**2).sum(dim=(1, 2))))
    alpha = float(alpha_list[best])
    loo_scores = targets - residual[best]  # (n, C): each example's scores from a fit without it
    labels = y.to(z.device)
    loo_accuracy = float((loo_scores.argmax(dim=1) == labels).double().mean())
    temperature = _temperature(loo_scores, labels)
    if n <= p:
        dual = q @ (qt / (v.clamp(min=0) + alpha)[:, None])  # (n, C): (z z^T + a I)^-1 t
        weight = (z.T @ dual.to(z.dtype)).double()  # (p, C)
    else:
        weight = vecs @ (ut / (v.clamp(min=0) + alpha)[:, None])  # (p, C)
    bias = target_mean - feature_mean @ weight  # (C,)
    return RidgeFit(
        weight=(weight.T * temperature).contiguous(),
        bias=bias * temperature,
        alpha=alpha,
        temperature=temperature,
        loo_accuracy=loo_accuracy,
    )


def _temperature(scores: Tensor, labels: Tensor) -> float:
    """The factor for ``scores`` ``(n, C)`` with the lowest cross-entropy on ``labels`` (a log-spaced grid)."""
    scales = _TEMPERATURES.to(scores.device)
    log_p = torch.log_softmax(scales[:, None, None] * scores[None], dim=2)  # (S, n, C)
    loss = -log_p[:, torch.arange(len(labels), device=scores.device), labels].mean(dim=1)  # (S,)
    return float(scales[int(torch.argmin(loss))])
