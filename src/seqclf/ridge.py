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


def fit_ridge(
    features: Tensor,
    y: Tensor,
    num_classes: int,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    max_loo: int = 3000,
) -> RidgeFit:
    """Fit a ridge classifier to ``features`` ``(n, p)`` and integer labels ``y`` ``(n,)`` in ``[0, num_classes)``.

    The features should be standardised (the penalty treats them alike). Targets are
    ``+1`` for the true class and ``-1`` otherwise, centred, with an unpenalised
    intercept. The Gram matrix (``n x n`` when ``n <= p``, else ``p x p``) is formed in
    the features' dtype on their device and eigendecomposed in float64; the features are
    copied once (centred), not converted.

    With more than ``max_loo`` examples, the penalty and the temperature are chosen on a
    random ``max_loo`` of them (torch's generator; its eigendecomposition costs
    ``max_loo**3``, not ``n**3``) and the weights are then solved on all of them.

    Raises:
        ValueError: a bad shape, label, penalty, or non-finite feature (each named).
    """
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"features must have shape (n >= 2, num_features); got {tuple(features.shape)}")
    if y.shape != (len(features),) or y.dtype.is_floating_point:
        raise ValueError(f"y must be integer labels of shape ({len(features)},); got {y.dtype} {tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}); got labels from {int(y.min())} to {int(y.max())}")
    if isinstance(max_loo, bool) or not isinstance(max_loo, int) or max_loo < 2:
        raise ValueError(f"max_loo must be an int >= 2; got {max_loo!r}")
    if not alphas or any(not (isinstance(a, (int, float)) and a > 0 and math.isfinite(a)) for a in alphas):
        raise ValueError(f"alphas must be positive finite numbers; got {list(alphas)!r}")
    if not features.is_floating_point() or not bool(torch.isfinite(features).all()):
        raise ValueError(f"features must be finite floating-point numbers; got {features.dtype} with NaN or Inf")
    n = len(features)
    feature_mean = features.mean(dim=0, dtype=torch.float64)  # (p,)
    z = features - feature_mean.to(features.dtype)  # (n, p) in the features' dtype: the one copy of them
    targets = torch.full((n, num_classes), -1.0, dtype=torch.float64, device=z.device)
    targets[torch.arange(n, device=z.device), y.to(z.device)] = 1.0
    target_mean = targets.mean(dim=0)
    t = targets - target_mean  # (n, C)
    alpha_list = torch.tensor([float(a) for a in alphas], dtype=torch.float64, device=z.device)
    labels = y.to(z.device)
    if n <= max_loo:
        solver = _Eigen(z, t)
        alpha, loo_scores = solver.leave_one_out(alpha_list, targets)
        weight = solver.weight(alpha)  # (p, C)
    else:  # choose on a random subset (re-centred), then one solve on everything
        subset = torch.randperm(n, device=z.device)[:max_loo]
        part, part_targets = z[subset], targets[subset]
        part_mean = part.mean(dim=0, dtype=torch.float64)
        part_t = part_targets - part_targets.mean(dim=0)
        alpha, loo_scores = _Eigen(part - part_mean.to(part.dtype), part_t).leave_one_out(alpha_list, part_targets)
        labels = labels[subset]
        weight = _solve(z, t, alpha)  # (p, C)
    loo_accuracy = float((loo_scores.argmax(dim=1) == labels).double().mean())
    temperature = _temperature(loo_scores, labels)
    bias = target_mean - feature_mean @ weight  # (C,)
    return RidgeFit(
        weight=(weight.T * temperature).contiguous(),
        bias=bias * temperature,
        alpha=alpha,
        temperature=temperature,
        loo_accuracy=loo_accuracy,
    )


class _Eigen:
    """One eigendecomposition of centred ``z`` ``(n, p)``'s Gram matrix, for every penalty at once."""

    def __init__(self, z: Tensor, t: Tensor) -> None:
        self.z, self.t = z, t  # (n, p), (n, C)
        self.dual = len(z) <= z.shape[1]
        if self.dual:  # z z^T = Q diag(v) Q^T; the hat matrix is Q diag(v / (v + a)) Q^T
            v, self.vectors = torch.linalg.eigh((z @ z.T).double())  # (n,), (n, n): the product in z's dtype
            self.basis = self.vectors  # (n, n)
        else:  # z^T z = V diag(v) V^T; the hat matrix is U diag(1 / (v + a)) U^T with U = z V
            v, self.vectors = torch.linalg.eigh((z.T @ z).double())  # (p,), (p, p)
            self.basis = z.double() @ self.vectors  # (n, p)
        self.values = v.clamp(min=0)
        self.projected = self.basis.T @ t  # (n or p, C)

    def leave_one_out(self, alphas: Tensor, targets: Tensor) -> tuple[float, Tensor]:
        """The penalty with the least leave-one-out squared error, and its leave-one-out scores ``(n, C)``."""
        n = len(self.z)
        if self.dual:
            gain = self.values[None, :] / (self.values[None, :] + alphas[:, None])  # (A, n)
        else:
            gain = 1.0 / (self.values[None, :] + alphas[:, None])  # (A, p)
        fitted = torch.stack([self.basis @ (row[:, None] * self.projected) for row in gain])  # (A, n, C)
        leverage = ((self.basis * self.basis) @ gain.T).T  # (A, n)
        # the residual of each example from a fit without it; the intercept's own leverage is 1/n
        residual = (self.t[None] - fitted) / (1.0 - leverage - 1.0 / n).clamp(min=1e-12)[:, :, None]  # (A, n, C)
        best = int(torch.argmin((residual**2).sum(dim=(1, 2))))
        return float(alphas[best]), targets - residual[best]

    def weight(self, alpha: float) -> Tensor:
        """The ridge weights ``(p, C)`` for penalty ``alpha``."""
        if self.dual:
            dual = self.vectors @ (self.projected / (self.values + alpha)[:, None])  # (n, C): (z z^T + a I)^-1 t
            weight: Tensor = (self.z.T @ dual.to(self.z.dtype)).double()
            return weight
        weight = self.vectors @ (self.projected / (self.values + alpha)[:, None])
        return weight


def _solve(z: Tensor, t: Tensor, alpha: float) -> Tensor:
    """The ridge weights ``(p, C)`` of centred ``z`` ``(n, p)`` and ``t`` ``(n, C)`` by one Cholesky solve."""
    n, p = z.shape
    if n <= p:
        gram = (z @ z.T).double() + alpha * torch.eye(n, dtype=torch.float64, device=z.device)  # (n, n)
        dual = torch.cholesky_solve(t, torch.linalg.cholesky(gram))  # (n, C)
        return (z.T @ dual.to(z.dtype)).double()
    gram = (z.T @ z).double() + alpha * torch.eye(p, dtype=torch.float64, device=z.device)  # (p, p)
    return torch.cholesky_solve((z.T @ t.to(z.dtype)).double(), torch.linalg.cholesky(gram))


def _temperature(scores: Tensor, labels: Tensor) -> float:
    """The factor for ``scores`` ``(n, C)`` with the lowest cross-entropy on ``labels`` (a log-spaced grid)."""
    scales = _TEMPERATURES.to(scores.device)
    log_p = torch.log_softmax(scales[:, None, None] * scores[None], dim=2)  # (S, n, C)
    loss = -log_p[:, torch.arange(len(labels), device=scores.device), labels].mean(dim=1)  # (S,)
    return float(scales[int(torch.argmin(loss))])
