"""Closed-form ridge classification: exact leave-one-out penalty choice, both solvers, the temperature."""

from __future__ import annotations

import pytest
import torch

from seqclf.ridge import DEFAULT_ALPHAS, fit_ridge


def problem(n: int, p: int, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(n, p)`` whose class shifts a few of them, and the labels ``(n,)``."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    z = torch.randn(n, p, generator=generator, dtype=torch.float64)
    z[torch.arange(n), y % p] += 1.5
    return z, y


def ridge_scores(z: torch.Tensor, t: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``(p, C)`` and bias ``(C,)`` of ridge with an unpenalised intercept, solved directly."""
    mean_z, mean_t = z.mean(dim=0), t.mean(dim=0)
    zc = z - mean_z
    weight = torch.linalg.solve(zc.T @ zc + alpha * torch.eye(z.shape[1], dtype=z.dtype), zc.T @ (t - mean_t))
    return weight, mean_t - mean_z @ weight


def targets(y: torch.Tensor, classes: int) -> torch.Tensor:
    t = torch.full((len(y), classes), -1.0, dtype=torch.float64)
    t[torch.arange(len(y)), y] = 1.0
    return t


@pytest.mark.parametrize(("n", "p"), [(12, 30), (40, 5)])  # the dual (n <= p) and the primal solver
def test_the_penalty_is_the_one_with_the_least_leave_one_out_error(n: int, p: int) -> None:
    z, y = problem(n, p)
    t = targets(y, 3)
    brute = []
    for alpha in DEFAULT_ALPHAS:  # refit without each example in turn
        error = 0.0
        for i in range(n):
            keep = torch.arange(n) != i
            weight, bias = ridge_scores(z[keep], t[keep], alpha)
            error += float(((z[i] @ weight + bias - t[i]) ** 2).sum())
        brute.append(error)
    fit = fit_ridge(z, y, 3)
    assert fit.alpha == pytest.approx(DEFAULT_ALPHAS[min(range(len(brute)), key=brute.__getitem__)])
    weight, bias = ridge_scores(z, t, fit.alpha)  # and the weights are that penalty's ridge, scaled
    torch.testing.assert_close(fit.weight, weight.T * fit.temperature, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fit.bias, bias * fit.temperature, rtol=1e-6, atol=1e-8)


def test_leave_one_out_accuracy_is_that_of_refits_without_each_example() -> None:
    z, y = problem(15, 8, seed=1)
    t = targets(y, 3)
    fit = fit_ridge(z, y, 3, alphas=(1.0,))
    right = 0
    for i in range(15):
        keep = torch.arange(15) != i
        weight, bias = ridge_scores(z[keep], t[keep], 1.0)
        right += int((z[i] @ weight + bias).argmax() == y[i])
    assert fit.loo_accuracy == pytest.approx(right / 15)


def test_float32_features_give_the_float64_fit() -> None:
    z, y = problem(20, 50)
    exact, single = fit_ridge(z, y, 3), fit_ridge(z.float(), y, 3)
    assert single.alpha == exact.alpha and single.temperature == exact.temperature
    torch.testing.assert_close(single.weight, exact.weight, rtol=1e-3, atol=1e-4)


def test_the_temperature_makes_confident_probabilities_on_separable_data() -> None:
    z, y = problem(30, 40)
    z[torch.arange(30), y] += 6.0  # far apart: ridge scores near +-1, whose softmax alone is near uniform
    fit = fit_ridge(z, y, 3)
    proba = torch.softmax(z @ fit.weight.T + fit.bias, dim=1)
    assert fit.temperature > 1.0 and float(proba.max(dim=1).values.min()) > 0.9
    assert fit.loo_accuracy == 1.0


def test_bad_input_is_refused_naming_the_argument() -> None:
    z, y = problem(6, 4)
    with pytest.raises(ValueError, match=r"features must have shape \(n >= 2, num_features\); got \(6,\)"):
        fit_ridge(z[:, 0], y, 3)
    with pytest.raises(ValueError, match=r"y must be integer labels of shape \(6,\)"):
        fit_ridge(z, y.float(), 3)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\); got labels from 0 to 2"):
        fit_ridge(z, y, 2)
    with pytest.raises(ValueError, match=r"alphas must be positive finite numbers; got \[0.0\]"):
        fit_ridge(z, y, 3, alphas=(0.0,))
    z[0, 0] = float("nan")
    with pytest.raises(ValueError, match="features must be finite"):
        fit_ridge(z, y, 3)


@pytest.mark.parametrize(("n", "p"), [(60, 80), (60, 10)])
def test_many_examples_choose_on_a_subset_and_solve_on_all(n: int, p: int) -> None:
    z, y = problem(n, p, seed=2)
    torch.manual_seed(0)
    fit = fit_ridge(z, y, 3, max_loo=25)
    weight, bias = ridge_scores(z, targets(y, 3), fit.alpha)  # the chosen penalty's ridge on all n
    torch.testing.assert_close(fit.weight, weight.T * fit.temperature, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fit.bias, bias * fit.temperature, rtol=1e-6, atol=1e-8)
    torch.manual_seed(0)
    subset = torch.randperm(n)[:25]  # the subset the fit drew: its own leave-one-out choice
    assert fit.alpha == fit_ridge(z[subset], y[subset], 3).alpha
    with pytest.raises(ValueError, match="max_loo must be an int >= 2; got 1"):
        fit_ridge(z, y, 3, max_loo=1)
