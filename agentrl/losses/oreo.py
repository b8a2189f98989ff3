"""OREO losses (Wang et al. 2024, arXiv:2412.16145, Eq. 8-10): pure tensor functions.

Notation: a trajectory is states ``s_0..s_{T-1}`` and actions ``a_0..a_{T-1}``; ``R`` is its terminal reward;
``lr_t = log pi(a_t|s_t) - log pi_ref(a_t|s_t)`` is the policy/reference log-ratio of action ``t``; an *action* is
one token (token level), one step (step level: the sum of its tokens' log-ratios) or the whole response (response
level). The learner maps tokens to actions ("segments") with :func:`agentrl.losses.segment_sum`, so these
losses work on ``[B, S]`` tensors for every level (shapes: :mod:`agentrl.losses.common`).
"""

from __future__ import annotations

import torch

from agentrl.losses.common import Metrics, masked_row_mean, squared_errors, value_metrics


def soft_bellman_targets(
    step_logratio: torch.Tensor, state_mask: torch.Tensor, reward: torch.Tensor, beta: float
) -> torch.Tensor:
    """Value targets of OREO's soft Bellman consistency (paper Eq. 8).

    ``target_t = R - beta * sum_{i >= t} lr_i``. Consecutive targets differ by one log-ratio,
    ``target_t - target_{t+1} = -beta * lr_t``, and they telescope: ``target_{T-1} + beta * lr_{T-1} = R``,
    the value of the terminal state.

    Args:
        step_logratio: ``[B, S]`` log-ratio ``lr_t`` of each action (0 where ``state_mask`` is False).
        state_mask: ``[B, S]`` bool, real states.
        reward: ``[B]`` terminal reward ``R``.
        beta: KL coefficient ``beta``.

    Returns:
        ``[B, S]`` targets (0 where ``state_mask`` is False).
    """
    lr = step_logratio * state_mask.to(step_logratio.dtype)
    future = torch.flip(torch.cumsum(torch.flip(lr, dims=[1]), dim=1), dims=[1])  # sum_{i >= t} lr_i
    return (reward[:, None] - beta * future) * state_mask.to(step_logratio.dtype)


def afterstate_targets(
    token_logratio: torch.Tensor,
    after_positions: torch.Tensor,
    after_mask: torch.Tensor,
    reward: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Value targets of afterstates: the soft Bellman target of the state that follows each action.

    The afterstate of assistant turn ``j`` is the prefix ending with its end-of-turn token at position
    ``p_j`` (:mod:`agentrl.data`). The environment's answer that follows carries no policy log-ratio, so its
    target is the target of the next state, ``target_j = R - beta * sum_{i > p_j} lr_i`` over the action
    tokens ``i`` after ``p_j`` (at every level: a step's or a response's log-ratio is the sum of its tokens').
    The last turn's afterstate gets ``R``, the outcome. The same formula at a state position (the token
    before an action segment) gives :func:`soft_bellman_targets`.

    Args:
        token_logratio: ``[B, L]`` log-ratio of the action token at each position, 0 elsewhere.
        after_positions: ``[B, T]`` long, afterstate positions ``p_j``.
        after_mask: ``[B, T]`` bool, real afterstates.
        reward: ``[B]`` terminal reward ``R``.
        beta: KL coefficient ``beta``.

    Returns:
        ``[B, T]`` targets (0 where ``after_mask`` is False).
    """
    b = token_logratio.shape[0]
    # suffix[b, p] = sum_{i >= p} lr[b, i], with one zero column so that p_j + 1 = L is valid
    padded = torch.cat([token_logratio, token_logratio.new_zeros(b, 1)], dim=1)
    suffix = torch.flip(torch.cumsum(torch.flip(padded, dims=[1]), dim=1), dims=[1])
    future = suffix.gather(1, after_positions + 1)
    return (reward[:, None] - beta * future) * after_mask.to(token_logratio.dtype)


def oreo_value_loss(
    values: torch.Tensor,
    step_logratio: torch.Tensor,
    state_mask: torch.Tensor,
    reward: torch.Tensor,
    beta: float,
    after_values: torch.Tensor | None = None,
    after_targets: torch.Tensor | None = None,
    after_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """OREO value loss (paper Eq. 8): regress ``V(s_t)`` on the soft Bellman target.

    ``L_V = E_tau [ 1/T sum_t ( V(s_t) - R + beta * sum_{i >= t} lr_i )^2 ]``. Only the critic is trained
    here: the log-ratios are detached. With afterstates (``after_*``, see :func:`afterstate_targets`) the
    per-episode mean runs over the states and the afterstates together:
    ``1/(T + T') [ sum_t (V(s_t) - target_t)^2 + sum_j (V(s^a_j) - target^a_j)^2 ]``; without them this is
    exactly the reference implementation's loss.

    Args:
        values: ``[B, S]`` critic values ``V(s_t)`` at the state positions.
        step_logratio: ``[B, S]`` action log-ratios (detached inside).
        state_mask: ``[B, S]`` bool.
        reward: ``[B]``.
        beta: KL coefficient.
        after_values: ``[B, T]`` critic values at the afterstate positions, or None.
        after_targets: ``[B, T]`` their targets (no gradient), with ``after_values``.
        after_mask: ``[B, T]`` bool, with ``after_values``.

    Returns:
        The scalar loss and metrics ``value_loss``, ``value_mean``, ``target_mean``, and with afterstates
        ``afterstate_value_loss`` (their mean squared error alone).
    """
    target = soft_bellman_targets(step_logratio.detach(), state_mask, reward, beta)
    after = None
    if after_values is not None:
        if after_targets is None or after_mask is None:
            raise ValueError("oreo_value_loss: after_values needs after_targets and after_mask")
        after = (after_values, after_targets, after_mask)
    errors, mask, metrics = squared_errors(values, target, state_mask, after)
    loss = masked_row_mean(errors, mask)
    return loss, {"value_loss": loss.item(), **value_metrics(values, target, state_mask), **metrics}


def oreo_policy_loss(
    values: torch.Tensor,
    step_logratio: torch.Tensor,
    state_mask: torch.Tensor,
    reward: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, Metrics]:
    """OREO policy loss (paper Eq. 9; Eq. 10 when there is one state per episode).

    ``L_pi = E_tau [ 1/T sum_t ( sg[V(s_t)] - R + beta * lr_t + sg[beta * sum_{i > t} lr_i] )^2 ]``.

    The gradient of term ``t`` reaches only ``lr_t = log pi(a_t|s_t) - log pi_ref(a_t|s_t)``: the value
    and the future log-ratios are stop-gradient (``sg``). At the response level (``S = 1``, the state
    ``s_0`` and one action covering the whole response) this is Eq. 10,
    ``( sg[V(s_0)] - R + beta * sum_t log pi/pi_ref(a_t|s_t) )^2``, with the gradient reaching every token.
    At the step level each ``lr_t`` is the sum of a step's token log-ratios. The KL regulariser
    ``alpha * L_reg`` is added by the caller (see :func:`token_logps_and_kl`).

    Args:
        values: ``[B, S]`` critic values (detached inside).
        step_logratio: ``[B, S]`` action log-ratios, differentiable w.r.t. the policy.
        state_mask: ``[B, S]`` bool.
        reward: ``[B]``.
        beta: KL coefficient.

    Returns:
        The scalar loss and metrics ``policy_loss``, ``logratio_mean``.
    """
    m = state_mask.to(step_logratio.dtype)
    lr = step_logratio * m
    future = torch.flip(torch.cumsum(torch.flip(lr.detach(), dims=[1]), dim=1), dims=[1]) - lr.detach()
    residual = values.detach() - reward[:, None] + beta * lr + beta * future
    loss = masked_row_mean(residual**2, state_mask)
    return loss, {"policy_loss": loss.item(), "logratio_mean": (lr.detach().sum() / m.sum()).item()}
