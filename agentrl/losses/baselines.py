"""Baselines: SFT (and rejection sampling, SFT on successes), SFT with an observation loss, and DPO."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agentrl.losses.common import Metrics, row_mean


def sft_loss(token_logp: torch.Tensor, rows: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, Metrics]:
    """Negative log-likelihood of the action tokens (SFT; rejection sampling is SFT on successes).

    ``L = E_tau [ -1/N_tau sum_{i in actions(tau)} log pi(a_i|s_i) ]``.

    Args:
        token_logp: ``[N]`` log-probs of the action tokens.
        rows: ``[N]`` the episode of each token.
        num_rows: ``B``.

    Returns:
        The scalar loss and metrics ``sft_loss``.
    """
    loss = row_mean(-token_logp, rows, num_rows)
    return loss, {"sft_loss": loss.item()}


def sft_obs_loss(
    token_logp: torch.Tensor,
    rows: torch.Tensor,
    obs_logp: torch.Tensor,
    obs_rows: torch.Tensor,
    num_rows: int,
    weight: float,
) -> tuple[torch.Tensor, Metrics]:
    """SFT plus ``weight`` times the next-token loss on the environment's observation tokens.

    ``L = L_act + W * L_obs`` with ``L_act`` :func:`sft_loss` and
    ``L_obs = E_tau [ -1/M_tau sum_{j in obs(tau)} log pi(o_j | x_<j) ]``: the model also learns to predict what
    the environment says (the room's objects, the result of its action), an auxiliary task that ties the names
    it reads to the names it writes. Episodes without observation tokens are left out of ``L_obs``'s mean; a
    batch without any has ``L_obs = 0``. ``W = 0`` returns :func:`sft_loss`'s loss itself (no observation term
    in the graph: the same numbers and gradients as plain SFT).

    Args:
        token_logp: ``[N]`` log-probs of the action tokens.
        rows: ``[N]`` the episode of each action token.
        obs_logp: ``[M]`` log-probs of the observation tokens.
        obs_rows: ``[M]`` the episode of each observation token.
        num_rows: ``B``.
        weight: ``W >= 0``.

    Returns:
        The scalar loss and metrics ``sft_loss`` (``L_act``), ``obs_loss`` (``L_obs``), ``obs_tokens`` (``M``).
    """
    action, metrics = sft_loss(token_logp, rows, num_rows)
    if obs_logp.numel():
        obs = row_mean(-obs_logp, obs_rows, num_rows)
    else:
        obs = obs_logp.sum()  # 0, still in the graph
    loss = action if weight == 0 else action + weight * obs
    return loss, {**metrics, "obs_loss": obs.item(), "obs_tokens": float(obs_logp.numel())}


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, Metrics]:
    """Direct preference optimisation (Rafailov et al. 2023) on success/failure pairs of a task.

    ``L = -E log sigmoid( beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))] )``,
    with ``log pi(y)`` the summed log-probs of an episode's action tokens.

    Args:
        policy_chosen: ``[P]`` summed policy log-probs of the successful episodes.
        policy_rejected: ``[P]`` the same for the failed episodes.
        ref_chosen: ``[P]`` reference log-probs of the successful episodes.
        ref_rejected: ``[P]`` reference log-probs of the failed episodes.
        beta: inverse temperature.

    Returns:
        The scalar loss and metrics ``dpo_loss``, ``reward_margin``, ``reward_accuracy``.
    """
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    loss = -F.logsigmoid(margin).mean()
    return loss, {
        "dpo_loss": loss.item(),
        "reward_margin": margin.detach().mean().item(),
        "reward_accuracy": (margin.detach() > 0).float().mean().item(),
    }
