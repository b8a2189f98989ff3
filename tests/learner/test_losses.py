"""Loss functions: hand-computed numbers (arithmetic in each docstring) and stop-gradient semantics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from agentrl import losses


def _case(requires_grad: bool = False):
    """One episode, two states: lr = [0.5, -1.0], R = 1, beta = 0.1, V = [0.2, 0.4]."""
    lr = torch.tensor([[0.5, -1.0]], requires_grad=requires_grad)
    values = torch.tensor([[0.2, 0.4]], requires_grad=requires_grad)
    mask = torch.tensor([[True, True]])
    return values, lr, mask, torch.tensor([1.0]), 0.1


def test_value_loss_hand_computed():
    """targets: t0 = 1 - 0.1*(0.5 - 1.0) = 1.05, t1 = 1 - 0.1*(-1.0) = 1.1;
    loss = ((0.2 - 1.05)^2 + (0.4 - 1.1)^2) / 2 = (0.7225 + 0.49) / 2 = 0.60625."""
    values, lr, mask, reward, beta = _case()
    target = losses.soft_bellman_targets(lr, mask, reward, beta)
    assert torch.allclose(target, torch.tensor([[1.05, 1.1]]))
    loss, metrics = losses.oreo_value_loss(values, lr, mask, reward, beta)
    assert loss.item() == pytest.approx(0.60625, abs=1e-6)
    assert metrics["value_loss"] == pytest.approx(0.60625, abs=1e-6)


def test_policy_loss_hand_computed_and_stop_gradient():
    """residual_0 = 0.2 - 1 + 0.1*0.5 + sg[0.1*(-1.0)] = -0.85, residual_1 = 0.4 - 1 + 0.1*(-1.0) = -0.7;
    loss = (0.7225 + 0.49) / 2 = 0.60625.
    d loss / d lr_0 = (1/2) * 2 * residual_0 * beta = -0.085 (term 0 only);
    d loss / d lr_1 = residual_1 * beta = -0.07 (term 1 only; without the stop-gradient it would be
    (residual_0 + residual_1) * beta = -0.155). The values get no gradient from the policy loss."""
    values, lr, mask, reward, beta = _case(requires_grad=True)
    loss, _ = losses.oreo_policy_loss(values, lr, mask, reward, beta)
    assert loss.item() == pytest.approx(0.60625, abs=1e-6)
    loss.backward()
    assert torch.allclose(lr.grad, torch.tensor([[-0.085, -0.07]]), atol=1e-7)
    assert values.grad is None or torch.all(values.grad == 0)


def test_policy_term_t_reaches_only_its_own_action():
    """With stop-gradient, d L / d lr_i = (2/T) * residual_i * beta: only term i reaches lr_i. Without it,
    lr_i would also get (2/T) * residual_t * beta from every earlier term t < i; the check below fails then
    (verified by the no-stop-gradient variant computed by hand in the second half)."""
    torch.manual_seed(0)
    lr = torch.randn(1, 5, requires_grad=True)
    values = torch.randn(1, 5)
    mask = torch.ones(1, 5, dtype=torch.bool)
    reward = torch.tensor([1.0])
    loss, _ = losses.oreo_policy_loss(values, lr, mask, reward, 0.1)
    loss.backward()
    residual = values - losses.soft_bellman_targets(
        lr.detach(), mask, reward, 0.1
    )  # V - R + beta * sum_{i>=t}
    assert torch.allclose(lr.grad, 2 * residual * 0.1 / 5, atol=1e-6)
    without_sg = 2 * torch.cumsum(residual, dim=1) * 0.1 / 5  # what a loss without sg[] would give
    assert not torch.allclose(lr.grad, without_sg, atol=1e-4)


def test_value_loss_trains_only_the_critic():
    values, lr, mask, reward, beta = _case(requires_grad=True)
    loss, _ = losses.oreo_value_loss(values, lr, mask, reward, beta)
    loss.backward()
    assert lr.grad is None or torch.all(lr.grad == 0)
    # d/dV_t = (V_t - target_t): [0.2 - 1.05, 0.4 - 1.1] = [-0.85, -0.7]
    assert torch.allclose(values.grad, torch.tensor([[-0.85, -0.7]]), atol=1e-6)


def test_targets_telescope_to_reward():
    """target_t - target_{t+1} = -beta * lr_t, and target_{T-1} + beta * lr_{T-1} = R (the terminal value)."""
    torch.manual_seed(1)
    lr = torch.randn(3, 6)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False  # a shorter episode: its last state is 3
    reward = torch.tensor([1.0, -1.0, 0.5])
    beta = 0.03
    target = losses.soft_bellman_targets(lr, mask, reward, beta)
    for b, last in ((0, 5), (1, 3), (2, 5)):
        for t in range(last):
            assert target[b, t] - target[b, t + 1] == pytest.approx(-beta * lr[b, t].item(), abs=1e-6)
        assert target[b, last] + beta * lr[b, last] == pytest.approx(reward[b].item(), abs=1e-6)
    assert torch.all(target[1, 4:] == 0)


def test_response_level_is_eq10_with_gradient_to_every_token():
    """One state s_0, one action made of tokens with log-ratios 0.1 and 0.2 (summed by segment_sum: 0.3);
    V = 0.5, R = 1, beta = 0.1: residual = 0.5 - 1 + 0.1*0.3 = -0.47, loss = 0.2209;
    d loss / d token_lr = 2 * (-0.47) * 0.1 = -0.094 for both tokens."""
    token_lr = torch.tensor([0.1, 0.2], requires_grad=True)
    step_lr = losses.segment_sum(token_lr, torch.tensor([0, 0]), 1, 1)
    loss, _ = losses.oreo_policy_loss(
        torch.tensor([[0.5]]), step_lr, torch.ones(1, 1, dtype=torch.bool), torch.tensor([1.0]), 0.1
    )
    assert loss.item() == pytest.approx(0.2209, abs=1e-6)
    loss.backward()
    assert torch.allclose(token_lr.grad, torch.tensor([-0.094, -0.094]), atol=1e-6)


def test_per_episode_mean_then_batch_mean():
    """Row 0 has states with squared errors 0.7225, 0.49 (mean 0.60625); row 1 one state V=0, R=-1, lr=0:
    error 1.0. Loss = (0.60625 + 1.0) / 2 = 0.803125."""
    values = torch.tensor([[0.2, 0.4], [0.0, 0.0]])
    lr = torch.tensor([[0.5, -1.0], [0.0, 7.0]])  # 7.0 is padding: masked out
    mask = torch.tensor([[True, True], [True, False]])
    loss, _ = losses.oreo_value_loss(values, lr, mask, torch.tensor([1.0, -1.0]), 0.1)
    assert loss.item() == pytest.approx(0.803125, abs=1e-6)


def test_segment_sum_and_row_mean():
    """tokens [1, 2, 3, 4] in (row, segment) = (0,0), (0,0), (0,1), (1,0) with S = 2 -> [[3, 3], [4, 0]];
    row_mean: row 0 mean (1+2+3)/3 = 2, row 1 mean 4 -> 3."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = losses.segment_sum(x, torch.tensor([0, 0, 1, 2]), 2, 2)
    assert torch.equal(out, torch.tensor([[3.0, 3.0], [4.0, 0.0]]))
    assert losses.row_mean(x, torch.tensor([0, 0, 0, 1]), 2).item() == pytest.approx(3.0)


def test_chunked_kl_equals_naive_kl_and_gradients():
    torch.manual_seed(2)
    logits = torch.randn(7, 11, requires_grad=True)
    ref = torch.randn(7, 11)
    targets = torch.randint(0, 11, (7,))
    logp, kl = losses.token_logps_and_kl(logits, targets, ref, chunk_size=3)
    naive_logp = torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    naive_kl = F.kl_div(
        torch.log_softmax(ref, -1), torch.log_softmax(logits, -1), log_target=True, reduction="none"
    ).sum(-1)
    assert torch.allclose(logp, naive_logp, atol=1e-6)
    assert torch.allclose(kl, naive_kl, atol=1e-6)
    (g1,) = torch.autograd.grad((kl.sum() + logp.sum()), logits)
    (g2,) = torch.autograd.grad((naive_kl.sum() + naive_logp.sum()), logits)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_topk_kl_hand_computed_exact_at_full_vocab_and_lower_bound():
    """pi = [0.5, 0.3, 0.2], ref = [0.6, 0.3, 0.1]; ref top-1 = {0}.
    coarse KL = 0.5 ln(0.5/0.6) + 0.5 ln(0.5/0.4) = -0.091161 + 0.111572 = 0.020411;
    full KL = 0.5 ln(0.5/0.6) + 0.3 ln 1 + 0.2 ln 2 = -0.091161 + 0.138629 = 0.047468."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    ref_lp = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    targets = torch.tensor([1])
    _, kl1 = losses.token_logps_and_topk_kl(logits, targets, torch.tensor([[0]]), ref_lp[:, :1])
    assert kl1.item() == pytest.approx(0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4), abs=1e-5)
    _, kl_all = losses.token_logps_and_topk_kl(logits, targets, torch.tensor([[0, 1, 2]]), ref_lp)
    assert kl_all.item() == pytest.approx(0.047468, abs=1e-5)
    torch.manual_seed(3)
    z, r = torch.randn(5, 20), torch.randn(5, 20)
    _, full = losses.token_logps_and_kl(z, torch.zeros(5, dtype=torch.long), r)
    top = torch.log_softmax(r, -1).topk(4)
    _, coarse = losses.token_logps_and_topk_kl(z, torch.zeros(5, dtype=torch.long), top.indices, top.values)
    assert torch.all(coarse <= full + 1e-6) and torch.all(coarse >= -1e-6)


def test_sft_loss_hand_computed():
    """V = 2; logits [0, ln 3] give p(1) = 0.75: NLL = -ln 0.75 = 0.287682. Row 0 has that token twice,
    row 1 has target 0 with p(0) = 0.25: NLL = ln 4 = 1.386294. Loss = (0.287682 + 1.386294) / 2 = 0.836988."""
    z = torch.tensor([[0.0, math.log(3)]] * 3)
    logp = losses.token_logps(z, torch.tensor([1, 1, 0]))
    loss, _ = losses.sft_loss(logp, torch.tensor([0, 0, 1]), 2)
    assert loss.item() == pytest.approx(0.836988, abs=1e-6)


def test_dpo_loss_hand_computed():
    """margin = 0.5 * ((-1 - -2) - (-3 - -2)) = 0.5 * 2 = 1; loss = -log sigmoid(1) = ln(1 + e^-1) = 0.313262."""
    loss, m = losses.dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5
    )
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)
    assert m["reward_accuracy"] == 1.0


def test_afterstate_targets_hand_computed():
    """Positions 0..5; action tokens at 2, 3 (turn 1, end-of-turn at 3) and 5 (turn 2, end-of-turn at 5), with
    log-ratios 0.5, -1.0, 2.0; R = 1, beta = 0.1. Afterstate of turn 1 (p = 3): 1 - 0.1 * 2.0 = 0.8 (only
    token 5 comes after it); of turn 2 (p = 5, the last): R = 1. A padded third turn gets 0."""
    lr = torch.tensor([[0.0, 0.0, 0.5, -1.0, 0.0, 2.0]])
    positions = torch.tensor([[3, 5, 0]])
    mask = torch.tensor([[True, True, False]])
    target = losses.afterstate_targets(lr, positions, mask, torch.tensor([1.0]), 0.1)
    assert torch.allclose(target, torch.tensor([[0.8, 1.0, 0.0]]))


def test_afterstate_formula_at_state_positions_is_the_soft_bellman_target():
    """At the token level the state before action token i sits at i - 1, and R - beta * sum_{tokens > i - 1}
    is R - beta * sum_{segments >= k}: the afterstate formula gives Eq. 8's targets at the states."""
    torch.manual_seed(0)
    lr_tokens = torch.randn(2, 7)
    action = torch.tensor([[0, 0, 1, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    dense = lr_tokens * action
    reward = torch.tensor([1.0, 0.0])
    states = [torch.nonzero(row).squeeze(1) - 1 for row in action]
    s = max(len(x) for x in states)
    positions = torch.stack([torch.cat([x, x.new_zeros(s - len(x))]) for x in states])
    mask = torch.stack([torch.arange(s) < len(x) for x in states])
    step_lr = torch.stack([torch.cat([r[a], r.new_zeros(s - int(a.sum()))]) for r, a in zip(dense, action, strict=True)])
    expected = losses.soft_bellman_targets(step_lr, mask, reward, 0.3)
    assert torch.allclose(losses.afterstate_targets(dense, positions, mask, reward, 0.3), expected, atol=1e-6)


def test_value_loss_with_afterstates_hand_computed_and_detached():
    """The case above (states V = [0.2, 0.4], targets [1.05, 1.1]) plus one afterstate with V = 0.5, target 1.0:
    loss = (0.7225 + 0.49 + 0.25) / 3 = 0.4875; afterstate loss alone 0.25. d loss / d V_after =
    2 * (0.5 - 1.0) / 3 = -1/3; the targets get no gradient."""
    values, lr, mask, reward, beta = _case()
    after = torch.tensor([[0.5]], requires_grad=True)
    after_target = torch.tensor([[1.0]], requires_grad=True)
    loss, metrics = losses.oreo_value_loss(values, lr, mask, reward, beta, after_values=after,
                                           after_targets=after_target, after_mask=torch.tensor([[True]]))
    assert loss.item() == pytest.approx(0.4875, abs=1e-6)
    assert metrics["afterstate_value_loss"] == pytest.approx(0.25, abs=1e-6)
    loss.backward()
    assert after.grad.item() == pytest.approx(-1 / 3, abs=1e-6)
    assert after_target.grad is None
