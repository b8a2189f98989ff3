"""DQO losses (Direct Q-function Optimization, Liu et al. 2024, arXiv:2410.09302): pure tensor functions.

DQO views generation as a token-level MDP and parameterises the soft Q-function by the language model,
``Q(s_h, a_h) = V(s_h) + beta * lr_h`` with ``lr_h = log pi(a_h|s_h) - log pi_ref(a_h|s_h)``, next to a
separate value model ``V``. The KL-regularised objective becomes an ordinary one with the shaped reward
``r~_h = r_h - beta * lr_h``; ``r_h`` is 0 except at the last action, where it is the episode's reward ``R``.

Both models regress on lambda-returns built from the detached value and log-ratios, by the normalised
recursion (the paper's printed sum drops its tail term; the recursion keeps it):

``G_h = r~_h + (1 - lambda) * V(s_{h+1}) + lambda * G_{h+1}``, with ``V(s_T) = G_T = 0`` after the last state.

* value loss:  ``L_V  = E_tau [ w * 1/T sum_h ( G_h - V(s_h) )^2 ]``;
* policy loss: ``L_pi = E_tau [ w * 1/T sum_h ( sg[V(s_h)] + beta * lr_h - r_h - sg[G_{h+1}] )^2 ]``;
* ``w = min(pi(tau) / pi_ref(tau), c)`` (detached): the trajectory importance weight that corrects for
  data sampled from ``pi_ref`` while ``pi`` moves away from it (the paper clips at ``c = e``).

With ``lambda = 1`` and ``w = 1`` the targets are OREO's (``G_h = R - beta * sum_{i >= h} lr_i``) and the
policy loss is OREO's Eq. 9 without its KL regulariser. Shapes follow :mod:`agentrl.losses.common`: ``B`` episodes,
``S`` states (segments; one per action token at the token level, DQO's MDP) with ``state_mask`` marking the real
ones, ``N`` action tokens.
"""

from __future__ import annotations

import math

import torch

from agentrl.losses.common import Metrics, masked_row_mean, squared_errors, value_metrics

DEFAULT_CLIP = math.e
WEIGHT_TARGETS = ("both", "policy", "value", "none")


def terminal_rewards(state_mask: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """``r_h``: the episode's reward at its last real state, 0 elsewhere.

    Args:
        state_mask: ``[B, S]`` bool, real states (a prefix of each row).
        reward: ``[B]`` terminal reward ``R``.

    Returns:
        ``[B, S]`` with ``r[b, T_b - 1] = R_b`` and zeros elsewhere (a row without states is all zero).
    """
    counts = state_mask.sum(dim=1)
    last = (counts - 1).clamp(min=0)
    out = torch.zeros(state_mask.shape, dtype=reward.dtype, device=reward.device)
    out[torch.arange(len(reward), device=reward.device), last] = reward * (counts > 0).to(reward.dtype)
    return out


def lambda_returns(
    values: torch.Tensor,
    step_logratio: torch.Tensor,
    state_mask: torch.Tensor,
    reward: torch.Tensor,
    beta: float,
    lam: float,
) -> torch.Tensor:
    """Lambda-returns ``G_h`` of the shaped reward (no gradient).

    ``G_h = r~_h + (1 - lambda) * V(s_{h+1}) + lambda * G_{h+1}``, ``r~_h = r_h - beta * lr_h``, and
    ``V(s_T) = G_T = 0`` after each episode's last state ``T - 1``. Unrolled:
    ``G_h = sum_{k >= h} lambda^{k-h} (r~_k + (1 - lambda) V(s_{k+1}))``; ``lambda = 1`` gives the Monte Carlo
    return ``R - beta * sum_{i >= h} lr_i`` (OREO's target), ``lambda = 0`` the one-step target
    ``r~_h + V(s_{h+1})``.

    Args:
        values: ``[B, S]`` ``V(s_h)`` (detached inside).
        step_logratio: ``[B, S]`` ``lr_h`` (detached inside).
        state_mask: ``[B, S]`` bool, real states (a prefix of each row).
        reward: ``[B]`` terminal reward ``R``.
        beta: KL coefficient ``beta``.
        lam: ``lambda`` in ``[0, 1]``.

    Returns:
        ``[B, S]`` ``G_h`` (0 where ``state_mask`` is False).
    """
    m = state_mask.to(values.dtype)
    v = values.detach() * m
    shaped = (terminal_rewards(state_mask, reward).to(v.dtype) - beta * step_logratio.detach()) * m
    out = torch.zeros_like(v)
    future = torch.zeros_like(v[:, 0])  # G_{h+1}
    next_value = torch.zeros_like(v[:, 0])  # V(s_{h+1})
    for h in range(v.shape[1] - 1, -1, -1):  # padded states have r~ = V = 0, so G stays 0 past the end
        future = shaped[:, h] + (1.0 - lam) * next_value + lam * future
        out[:, h] = future
        next_value = v[:, h]
    return out * m


def afterstate_targets(
    returns: torch.Tensor,
    state_mask: torch.Tensor,
    reward: torch.Tensor,
    after_segments: torch.Tensor,
    after_mask: torch.Tensor,
) -> torch.Tensor:
    """Targets at afterstates (each assistant turn's end-of-turn token, where best-of-K and beam search read V):
    the return from right after the turn's last action ``h_j``, ``target_j = r_{h_j} + G_{h_j + 1}`` (no gradient).

    The environment's answer carries no log-ratio, so this is the next state's lambda-return (``r_{h_j} = 0``
    before the last action); after the last action it is ``R`` (``G_T = 0``). With ``lambda = 1`` it is OREO's
    afterstate target ``R - beta * sum_{i > h_j} lr_i`` (:func:`agentrl.losses.afterstate_targets`).

    Args:
        returns: ``[B, S]`` ``G_h`` from :func:`lambda_returns`.
        state_mask, reward: as in :func:`lambda_returns`.
        after_segments: ``[B, T]`` long, the segment of each turn's end-of-turn token ``h_j``.
        after_mask: ``[B, T]`` bool, real afterstates.

    Returns:
        ``[B, T]`` targets (0 where ``after_mask`` is False).
    """
    after_action = terminal_rewards(state_mask, reward).to(returns.dtype) + _next(returns.detach())
    return after_action.gather(1, after_segments.clamp(min=0)) * after_mask.to(returns.dtype)


def _next(returns: torch.Tensor) -> torch.Tensor:
    """``G_{h+1}`` at every ``h`` (``G_T = 0`` past the last column)."""
    return torch.cat([returns[:, 1:], torch.zeros_like(returns[:, :1])], dim=1)


def trajectory_weight(step_logratio: torch.Tensor, state_mask: torch.Tensor, clip: float) -> torch.Tensor:
    """DQO's importance weight ``w = min(pi(tau) / pi_ref(tau), c)`` per episode (no gradient).

    ``pi(tau) / pi_ref(tau) = exp(sum_h lr_h)`` (the environment's transitions cancel), computed as
    ``exp(min(sum_h lr_h, log c))`` so a long trajectory never overflows.

    Args:
        step_logratio: ``[B, S]`` ``lr_h`` (detached inside).
        state_mask: ``[B, S]`` bool.
        clip: ``c > 0``.

    Returns:
        ``[B]`` weights in ``(0, c]``.
    """
    total = (step_logratio.detach() * state_mask.to(step_logratio.dtype)).sum(dim=1)
    return torch.exp(total.clamp(max=math.log(clip)))


def _weighted_row_mean(
    x: torch.Tensor, state_mask: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """``[B, S]`` -> scalar: mean over rows of ``w_b`` times the masked mean over states (``w = 1`` if None)."""
    if weight is None:
        return masked_row_mean(x, state_mask)
    return masked_row_mean(x * weight.detach()[:, None].to(x.dtype), state_mask)


def dqo_value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    state_mask: torch.Tensor,
    weight: torch.Tensor | None = None,
    after: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """DQO value loss: ``L_V = E_tau [ w * 1/T sum_h ( G_h - V(s_h) )^2 ]``.

    The targets ``G_h`` (:func:`lambda_returns`) are built from detached values and log-ratios, so only
    ``V(s_h)`` of each term receives a gradient. With afterstates (``after``; targets from
    :func:`afterstate_targets`; not in the paper: they make the critic usable by search) the per-episode mean
    runs over the states and the afterstates together,
    ``w / (T + T') [ sum_h (G_h - V(s_h))^2 + sum_j (target_j - V(s^a_j))^2 ]``, as OREO's does.

    Args:
        values: ``[B, S]`` critic values ``V(s_h)``, differentiable.
        returns: ``[B, S]`` targets ``G_h`` (detached inside).
        state_mask: ``[B, S]`` bool.
        weight: ``[B]`` importance weights ``w`` (detached inside), or None for ``w = 1``.
        after: ``(values, targets, mask)`` at the afterstates, each ``[B, T]`` (targets detached inside), or None.

    Returns:
        The scalar loss and metrics ``value_loss``, ``value_mse`` (the loss with ``w = 1``: comparable across
        steps while ``w`` changes), ``value_mean``, ``target_mean``, and with afterstates
        ``afterstate_value_loss`` (their unweighted mean squared error alone).
    """
    errors, mask, metrics = squared_errors(values, returns, state_mask, after)
    loss = _weighted_row_mean(errors, mask, weight)
    return loss, {
        "value_loss": loss.item(),
        "value_mse": masked_row_mean(errors.detach(), mask).item(),
        **value_metrics(values, returns, state_mask),
        **metrics,
    }


def dqo_policy_loss(
    values: torch.Tensor,
    step_logratio: torch.Tensor,
    returns: torch.Tensor,
    state_mask: torch.Tensor,
    reward: torch.Tensor,
    beta: float,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """DQO policy loss: ``L_pi = E_tau [ w * 1/T sum_h ( sg[V(s_h)] + beta * lr_h - r_h - sg[G_{h+1}] )^2 ]``.

    ``Q(s_h, a_h) = V(s_h) + beta * lr_h`` regresses on ``r_h + G_{h+1}``; the gradient of term ``h`` reaches only
    ``lr_h`` (``V``, ``G`` and ``w`` are stop-gradient). ``G_T = 0`` after the last state, so the last term is
    ``( sg[V(s_{T-1})] + beta * lr_{T-1} - R )^2``.

    Args:
        values: ``[B, S]`` critic values (detached inside).
        step_logratio: ``[B, S]`` ``lr_h``, differentiable w.r.t. the policy.
        returns: ``[B, S]`` ``G_h`` from :func:`lambda_returns` (detached inside).
        state_mask, reward, beta: as in :func:`lambda_returns`.
        weight: ``[B]`` importance weights ``w`` (detached inside), or None for ``w = 1``.

    Returns:
        The scalar loss and metrics ``policy_loss``, ``policy_mse`` (the loss with ``w = 1``), ``logratio_mean``.
    """
    m = state_mask.to(step_logratio.dtype)
    lr = step_logratio * m
    r = terminal_rewards(state_mask, reward).to(lr.dtype)
    residual = values.detach() + beta * lr - r - _next(returns.detach())
    loss = _weighted_row_mean(residual**2, state_mask, weight)
    return loss, {
        "policy_loss": loss.item(),
        "policy_mse": masked_row_mean(residual.detach() ** 2, state_mask).item(),
        "logratio_mean": (lr.detach().sum() / m.sum()).item(),
    }
