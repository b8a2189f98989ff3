"""OREAL losses: hand-computed values and gradients (arithmetic in each docstring) and stop-gradients."""

from __future__ import annotations

import math

import pytest
import torch

from agentrl.losses import oreal


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_rloo_advantages_hand_computed_and_the_pass_rate_formula():
    """Group 0: r = [1, -1, -1, -1] (K = 4, p = 1/4), sum -2: A_win = 1 - (-2 - 1)/3 = 2 = 2K(1-p)/(K-1);
    A_fail = -1 - (-2 + 1)/3 = -2/3 = -2Kp/(K-1). Group 1: r = [1, 1, -1], sum 1: A_win = 1 - 0/2 = 1,
    A_fail = -1 - 2/2 = -2. Group 2 has one sample: no baseline, A = 0."""
    reward = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
    a = oreal.rloo_advantages(reward, group)
    assert torch.allclose(a, torch.tensor([2.0, -2 / 3, -2 / 3, -2 / 3, 1.0, 1.0, -2.0, 0.0]), atol=1e-6)
    p = oreal.pass_rates(reward > 0, group)
    assert torch.allclose(p, torch.tensor([0.25] * 4 + [2 / 3] * 3 + [1.0]), atol=1e-6)


def test_cumulative_mean_restarts_in_each_episode():
    """Row 0 scores [1, 3, 2] -> running means [1, 2, 2]; row 1 [4, 0] -> [4, 2]."""
    z = torch.tensor([1.0, 3.0, 2.0, 4.0, 0.0])
    rows = torch.tensor([0, 0, 0, 1, 1])
    assert torch.allclose(oreal.cumulative_mean(z, rows, 2), torch.tensor([1.0, 2.0, 2.0, 4.0, 2.0]))


def test_reward_model_loss_hand_computed_with_gradients():
    """Row 0 (success) scores [1, 3, 2], mean 2: BCE = ln(1 + e^-2) = 0.126928; row 1 (failure) [4, 0], mean 2:
    BCE = ln(1 + e^2) = 2.126928; loss = mean = 1.126928. d/dz_i = (1/2)(sigmoid(2) - label)/n_row:
    row 0: (0.880797 - 1)/6 = -0.019867 each; row 1: 0.880797/4 = 0.220199 each. Accuracy: 1 of 2."""
    z = torch.tensor([1.0, 3.0, 2.0, 4.0, 0.0], requires_grad=True)
    rows = torch.tensor([0, 0, 0, 1, 1])
    loss, m = oreal.reward_model_loss(z, rows, 2, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(1.126928, abs=1e-6)
    assert m["rm_accuracy"] == 0.5
    loss.backward()
    expect = [(_sig(2) - 1) / 6] * 3 + [_sig(2) / 4] * 2
    assert torch.allclose(z.grad, torch.tensor(expect), atol=1e-6)


def test_token_weights_hand_computed_detached_and_zero_at_initialisation():
    """Success row 0 scores [1, 3, 2]: running means [1, 2, 2], w+ = 2 sigmoid - 1 = tanh(zbar/2) =
    [0.462117, 0.761594, 0.761594]. Failure row 1 scores [-2, 0]: running means [-2, -1],
    w- = 1 - 2 sigmoid = [tanh(1), tanh(0.5)] = [0.761594, 0.462117]. Failure row 2 scores [1]: 1 - 2 sigmoid(1)
    < 0, clipped to 0. Zero scores (a zero-initialised head) give w = 0 everywhere."""
    z = torch.tensor([1.0, 3.0, 2.0, -2.0, 0.0, 1.0], requires_grad=True)
    rows = torch.tensor([0, 0, 0, 1, 1, 2])
    success = torch.tensor([True, False, False])
    w = oreal.token_weights(z, rows, 3, success)
    expect = [math.tanh(0.5), math.tanh(1), math.tanh(1), math.tanh(1), math.tanh(0.5), 0.0]
    assert torch.allclose(w, torch.tensor(expect), atol=1e-6)
    assert not w.requires_grad
    assert torch.all(oreal.token_weights(torch.zeros(6), rows, 3, success) == 0)


def _policy_case():
    """Row 0 (success, A = 2): logp [-0.5, -1.0], ref [-0.7, -1.0], w [0.5, 1.0];
    row 1 (failure, A = -0.5): logp [-2.0], ref [-1.5], w [0.8]. eta = 0.5, kl_coef = 0.1."""
    logp = torch.tensor([-0.5, -1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-0.7, -1.0, -1.5])
    rows = torch.tensor([0, 0, 1])
    advantage = torch.tensor([2.0, -0.5], requires_grad=True)
    weight = torch.tensor([0.5, 1.0, 0.8], requires_grad=True)
    return logp, ref, rows, advantage, torch.tensor([True, False]), weight


def test_policy_loss_hand_computed_with_gradients():
    """N+ = 2, N- = 1, N = 3.
    BC: (0.5*2*0.5 + 1.0*2*1.0) / 2 = 1.25. PG: -0.5 * (0.8 * -0.5 * 1) / 1 = 0.2.
    k3 with d = ref - logp = [-0.2, 0, 0.5]: e^d - d - 1 = [0.018731, 0, 0.148721], KL = 0.167452/3 = 0.055817.
    loss = 1.25 + 0.2 + 0.1*0.055817 = 1.455582.
    d/dlogp (d k3/d logp = 1 - e^d, times kl_coef/N = 1/30):
      token 0: -w A/N+ = -0.5 + (1 - e^-0.2)/30 = -0.5 + 0.006042 = -0.493958;
      token 1: -1.0 + 0 = -1.0;
      token 2: -eta w A/N- = +0.2, + (1 - e^0.5)/30 = -0.021624 -> 0.178376 (descent lowers the failure's token).
    Advantages and token weights are constants: no gradient."""
    logp, ref, rows, advantage, success, weight = _policy_case()
    loss, m = oreal.oreal_policy_loss(logp, ref, rows, advantage, success, weight, eta=0.5, kl_coef=0.1)
    assert loss.item() == pytest.approx(1.455582, abs=1e-6)
    assert m["positive_loss"] == pytest.approx(1.25) and m["negative_loss"] == pytest.approx(0.2)
    assert m["kl"] == pytest.approx(0.055817, abs=1e-6)
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([-0.493958, -1.0, 0.178376]), atol=1e-6)
    assert advantage.grad is None and weight.grad is None


def test_policy_loss_step_norms_average_over_micro_batches():
    """norms = (N+, N-, N) per micro-batch of the optimizer step: twice this batch's counts halve every term
    (1.455582 / 2 = 0.727791); the k3 term is 0 where the policy equals the reference."""
    logp, ref, rows, advantage, success, weight = _policy_case()
    loss, _ = oreal.oreal_policy_loss(logp, ref, rows, advantage, success, weight, 0.5, 0.1, norms=(4, 2, 6))
    assert loss.item() == pytest.approx(0.727791, abs=1e-6)
    _, m = oreal.oreal_policy_loss(logp, logp.detach(), rows, advantage, success, weight, 0.5, 0.1)
    assert m["kl"] == pytest.approx(0.0, abs=1e-7)
