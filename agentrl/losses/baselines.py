"""Baselines: SFT (and rejection sampling, SFT on successes) and DPO."""

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
