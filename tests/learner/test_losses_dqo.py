"""DQO losses: hand-computed values and gradients (arithmetic in each docstring), OREO as the lambda = 1 case,
stop-gradient of the targets and of the importance weight."""

from __future__ import annotations

import math

import pytest
import torch

from agentrl import losses
from agentrl.losses import dqo


def _three_states(requires_grad: bool = False):
    """One episode, three states: V = [0.2, 0.4, 0.6], lr = [0.5, -1.0, 0.2], R = 1, beta = 0.1."""
    values = torch.tensor([[0.2, 0.4, 0.6]], requires_grad=requires_grad)
    lr = torch.tensor([[0.5, -1.0, 0.2]], requires_grad=requires_grad)
    return values, lr, torch.ones(1, 3, dtype=torch.bool), torch.tensor([1.0]), 0.1


def _random_batch(seed: int):
    torch.manual_seed(seed)
    values, lr = torch.randn(3, 6), torch.randn(3, 6)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    return values, lr, mask, torch.tensor([1.0, -1.0, 0.5])


def test_terminal_rewards_sit_at_each_last_state():
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    r = dqo.terminal_rewards(mask, torch.tensor([1.0, -1.0, 5.0]))
    assert torch.equal(r, torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_lambda_returns_hand_computed():
    """lambda = 0.5. Shaped rewards r~ = r - beta*lr = [-0.05, 0.1, 1 - 0.02] = [-0.05, 0.1, 0.98].
    G_2 = 0.98 (V = G = 0 after the end); G_1 = 0.1 + 0.5*0.6 + 0.5*0.98 = 0.89;
    G_0 = -0.05 + 0.5*0.4 + 0.5*0.89 = 0.595."""
    values, lr, mask, reward, beta = _three_states()
    g = dqo.lambda_returns(values, lr, mask, reward, beta, lam=0.5)
    assert torch.allclose(g, torch.tensor([[0.595, 0.89, 0.98]]), atol=1e-6)


def test_two_step_target_is_the_lambda_mix_of_one_and_two_step_returns():
    """Two states left: G_0 = (1 - lambda) G^(1) + lambda G^(2), with G^(1) = r~_0 + V(s_1) and
    G^(2) = r~_0 + r~_1 (+ V(s_2) = 0: the episode ends)."""
    values = torch.tensor([[0.3, -0.7]])
    lr = torch.tensor([[0.4, 0.9]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    reward, beta = torch.tensor([1.0]), 0.2
    shaped = torch.tensor([0.0, 1.0]) - beta * lr[0]
    g1 = shaped[0] + values[0, 1]
    g2 = shaped[0] + shaped[1]
    for lam in (0.0, 0.3, 0.8, 1.0):
        g = dqo.lambda_returns(values, lr, mask, reward, beta, lam)
        assert g[0, 0].item() == pytest.approx(((1 - lam) * g1 + lam * g2).item(), abs=1e-6)


def test_lambda_one_targets_are_oreos_value_targets():
    values, lr, mask, reward = _random_batch(0)
    g = dqo.lambda_returns(values, lr, mask, reward, 0.03, lam=1.0)
    assert torch.allclose(g, losses.soft_bellman_targets(lr, mask, reward, 0.03), atol=1e-6)


def test_value_loss_hand_computed_with_gradient_to_values_only():
    """lambda = 0.5, G = [0.595, 0.89, 0.98] (above). Squared errors (0.2-0.595)^2 = 0.156025,
    (0.4-0.89)^2 = 0.2401, (0.6-0.98)^2 = 0.1444; loss = 0.540525 / 3 = 0.180175.
    d/dV_h = (2/3)(V_h - G_h) = [-0.263333, -0.326667, -0.253333]: G is a detached target (were it not,
    V_1 would also get (2/3)(V_0 - G_0) * -(1 - lambda) = +0.131667 from term 0). lr gets no gradient.
    With w = 2 the loss and the gradients double (value_mse stays the unweighted 0.180175)."""
    values, lr, mask, reward, beta = _three_states(requires_grad=True)
    loss, m = dqo.dqo_value_loss(values, dqo.lambda_returns(values, lr, mask, reward, beta, 0.5), mask)
    assert loss.item() == pytest.approx(0.180175, abs=1e-6) and m["value_loss"] == pytest.approx(0.180175)
    loss.backward()
    assert torch.allclose(values.grad, torch.tensor([[-0.263333, -0.326667, -0.253333]]), atol=1e-6)
    assert lr.grad is None
    values.grad = None
    g = dqo.lambda_returns(values, lr, mask, reward, beta, 0.5)
    loss, m = dqo.dqo_value_loss(values, g, mask, weight=torch.tensor([2.0]))
    assert loss.item() == pytest.approx(0.36035, abs=1e-6)
    assert m["value_mse"] == pytest.approx(0.180175, abs=1e-6)  # the unweighted error, for comparing steps
    loss.backward()
    assert torch.allclose(values.grad, torch.tensor([[-0.526667, -0.653333, -0.506667]]), atol=1e-6)


def test_policy_loss_hand_computed_with_stop_gradient():
    """lambda = 0.5, G = [0.595, 0.89, 0.98]. Residuals sg[V_h] + beta*lr_h - r_h - sg[G_{h+1}]:
    h=0: 0.2 + 0.05 - 0 - 0.89 = -0.64; h=1: 0.4 - 0.1 - 0 - 0.98 = -0.68; h=2: 0.6 + 0.02 - 1 - 0 = -0.38.
    loss = (0.4096 + 0.4624 + 0.1444) / 3 = 0.3388.
    d/dlr_h = (2/3) residual_h beta = [-0.042667, -0.045333, -0.025333]: term h only. Without sg[G], term 0
    would also reach lr_1 through G_1 = r~_1 + ... (d G_1 / d lr_1 = -beta): another (2/3)(-0.64)(0.1) = -0.042667.
    V gets no gradient."""
    values, lr, mask, reward, beta = _three_states(requires_grad=True)
    g = dqo.lambda_returns(values, lr, mask, reward, beta, 0.5)
    loss, _ = dqo.dqo_policy_loss(values, lr, g, mask, reward, beta)
    assert loss.item() == pytest.approx(0.3388, abs=1e-6)
    loss.backward()
    assert torch.allclose(lr.grad, torch.tensor([[-0.042667, -0.045333, -0.025333]]), atol=1e-6)
    assert values.grad is None


def test_lambda_one_unit_weight_policy_loss_is_oreos_and_so_are_its_gradients():
    values, lr, mask, reward = _random_batch(1)
    lr_a, lr_b = lr.clone().requires_grad_(True), lr.clone().requires_grad_(True)
    g = dqo.lambda_returns(values, lr, mask, reward, 0.03, 1.0)
    a, _ = dqo.dqo_policy_loss(values, lr_a, g, mask, reward, 0.03)
    b, _ = losses.oreo_policy_loss(values, lr_b, mask, reward, 0.03)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    a.backward()
    b.backward()
    assert torch.allclose(lr_a.grad, lr_b.grad, atol=1e-7)
    va, _ = dqo.dqo_value_loss(values, g, mask)
    vb, _ = losses.oreo_value_loss(values, lr, mask, reward, 0.03)
    assert va.item() == pytest.approx(vb.item(), abs=1e-6)


def test_importance_weight_hand_computed_clipped_and_without_gradient():
    """Row 0: sum lr = 0.5 - 1.0 + 0.2 = -0.3, w = e^-0.3 = 0.740818; row 1: sum = 2 (padding 9 masked),
    e^2 > c = e, so w = e. The weight is a constant: a policy loss weighted by w(lr) has exactly w times the
    unweighted gradient (no d w / d lr term)."""
    lr = torch.tensor([[0.5, -1.0, 0.2], [1.5, 0.5, 9.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    w = dqo.trajectory_weight(lr, mask, clip=math.e)
    assert torch.allclose(w, torch.tensor([math.exp(-0.3), math.e]), atol=1e-6)
    assert not w.requires_grad
    values, reward = torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.0, 0.0]]), torch.tensor([1.0, -1.0])
    g = dqo.lambda_returns(values, lr, mask, reward, 0.1, 0.5)
    weighted, _ = dqo.dqo_policy_loss(values, lr, g, mask, reward, 0.1, weight=w)
    (g_weighted,) = torch.autograd.grad(weighted, lr)
    for row in range(2):  # each row alone, unweighted: loss_b / 2 is its share of the batch mean
        one = slice(row, row + 1)
        plain, _ = dqo.dqo_policy_loss(values[one], lr[one], g[one], mask[one], reward[one], 0.1)
        (g_plain,) = torch.autograd.grad(plain / 2, lr)
        assert torch.allclose(g_weighted[row], w[row] * g_plain[row], atol=1e-7)
    assert dqo.trajectory_weight(torch.tensor([[800.0]]), torch.tensor([[True]]), clip=3.0).item() == 3.0


def test_afterstate_targets_hand_computed_and_oreos_at_lambda_one():
    """Three states, lambda = 0.5: G = [0.595, 0.89, 0.98] (above), r = [0, 0, 1]. Two turns: turn 0 ends in
    segment 1, turn 1 in segment 2. target_0 = r_1 + G_2 = 0.98, target_1 = r_2 + G_3 = 1 + 0 = 1 (R: the episode
    is over). With lambda = 1 every target is OREO's R - beta * (log-ratios after the turn)."""
    values, lr, mask, reward, beta = _three_states()
    segments, after_mask = torch.tensor([[1, 2]]), torch.tensor([[True, True]])
    g = dqo.lambda_returns(values, lr, mask, reward, beta, 0.5)
    t = dqo.afterstate_targets(g, mask, reward, segments, after_mask)
    assert torch.allclose(t, torch.tensor([[0.98, 1.0]]), atol=1e-6)
    values, lr, mask, reward = _random_batch(2)
    segments = torch.tensor([[1, 3, 5], [0, 3, 0], [0, 0, 0]])
    after_mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    token_dense = lr * mask  # one token per segment: the token log-ratios are the step log-ratios
    oreo = losses.afterstate_targets(token_dense, segments, after_mask, reward, 0.03)
    g = dqo.lambda_returns(values, lr, mask, reward, 0.03, 1.0)
    ours = dqo.afterstate_targets(g, mask, reward, segments, after_mask)
    assert torch.allclose(ours, oreo, atol=1e-6)


def test_value_loss_with_afterstates_averages_them_with_the_states():
    """States' squared errors 0.156025, 0.2401, 0.1444 (lambda 0.5, above); afterstates V = [0.5, 0.9] against
    targets [0.98, 1]: 0.2304, 0.01. Loss = (0.540525 + 0.2404) / 5 = 0.156185; with w = 2, 0.31237.
    d/dV^a = (2/5)(V^a - target) = [-0.192, -0.04]."""
    values, lr, mask, reward, beta = _three_states()
    after = torch.tensor([[0.5, 0.9]], requires_grad=True)
    targets, after_mask = torch.tensor([[0.98, 1.0]]), torch.tensor([[True, True]])
    g = dqo.lambda_returns(values, lr, mask, reward, beta, 0.5)
    loss, m = dqo.dqo_value_loss(values, g, mask, after=(after, targets, after_mask))
    assert loss.item() == pytest.approx(0.156185, abs=1e-6)
    assert m["afterstate_value_loss"] == pytest.approx(0.1202, abs=1e-6)
    loss.backward()
    assert torch.allclose(after.grad, torch.tensor([[-0.192, -0.04]]), atol=1e-6)
    weighted, _ = dqo.dqo_value_loss(values, g, mask, torch.tensor([2.0]), (after, targets, after_mask))
    assert weighted.item() == pytest.approx(0.31237, abs=1e-6)
