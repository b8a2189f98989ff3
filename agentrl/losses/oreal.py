"""OREAL losses (Outcome REwArd-based reinforcement Learning, Lyu et al. 2025, arXiv:2502.06781).

Pure tensor functions. The data are groups of ``K`` samples of one task with binary outcomes; where the paper
and the authors' training code (github.com/InternLM/OREAL, ``train_oreal.py``) differ, these follow the code
that produced the paper's results (see docs/learner.md, "OREAL"):

* advantages: leave-one-out (RLOO) over the group on +-1 rewards, ``A_i = r_i - 1/(K-1) sum_{j != i} r_j``;
  for a group of pass rate ``p`` that is ``2K(1-p)/(K-1)`` on a success and ``-2Kp/(K-1)`` on a failure, the
  ``(1-p)`` vs ``p`` balance the paper derives for positive and (reshaped) negative samples;
* token reward model: a score ``z_i`` per action token (the value model's 1-d head at the position that
  predicts the token), trained by ``BCE(sigmoid(mean_i z_i), success)``; a token's importance is the
  *cumulative* mean ``zbar_i = mean_{j <= i} z_j`` (the code; the paper writes the per-token score), squashed:
  ``w+_i = max(2 sigmoid(zbar_i) - 1, 0)`` on successes, ``w-_i = max(1 - 2 sigmoid(zbar_i), 0)`` on failures
  (the code's threshold rescale at 0.5), detached;
* policy: positives ``sum_i w+_i A (-log pi_i) / N+`` (advantage-weighted behaviour cloning), negatives
  ``-eta sum_i w-_i A ratio_i / N-`` with ``ratio_i = exp(log pi_i - sg[log pi_i])`` (value 1, gradient
  ``grad log pi_i``: one on-policy policy-gradient step), KL to the reference by the k3 estimator
  ``sum_i (exp(log pi_ref_i - log pi_i) - (log pi_ref_i - log pi_i) - 1) / N`` with coefficient ``kl_coef``.
  ``N+``, ``N-``, ``N`` count positive, negative and all action tokens of the optimizer step ("per-token" loss).

Shapes: ``B`` episodes, ``N`` action tokens in the batch (row-major order of the action mask, as in
:mod:`agentrl.losses.common`), ``M`` episodes of a dataset (for the group functions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agentrl.losses.common import Metrics


def rloo_advantages(reward: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages within groups: ``A_i = r_i - (sum_{j in g(i)} r_j - r_i) / (K_g - 1)``.

    Args:
        reward: ``[M]`` rewards (OREAL: +1 success, -1 failure).
        group: ``[M]`` long, the group (task) of each sample, ``0..G-1``.

    Returns:
        ``[M]`` advantages; 0 in groups of one sample (no baseline to compare with).
    """
    num_groups = int(group.max()) + 1 if len(group) else 0
    sums = reward.new_zeros(num_groups).index_add(0, group, reward)
    counts = reward.new_zeros(num_groups).index_add(0, group, torch.ones_like(reward))
    k = counts[group]
    baseline = (sums[group] - reward) / (k - 1).clamp(min=1)
    return torch.where(k > 1, reward - baseline, torch.zeros_like(reward))


def pass_rates(success: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``[M]`` bool successes, ``[M]`` groups -> ``[M]`` the pass rate ``p`` of each sample's group."""
    num_groups = int(group.max()) + 1 if len(group) else 0
    wins = torch.zeros(num_groups, dtype=torch.float32).index_add(0, group, success.float())
    counts = torch.zeros(num_groups, dtype=torch.float32).index_add(0, group, torch.ones(len(group)))
    return (wins / counts)[group]


def _row_starts(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``[N]`` rows (sorted) -> ``[N]`` index of the first token of each token's row."""
    counts = torch.zeros(num_rows, dtype=torch.long, device=rows.device).index_add(
        0, rows, torch.ones_like(rows)
    )
    starts = torch.cumsum(counts, 0) - counts
    return starts[rows]


def cumulative_mean(token_scores: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Running mean of each episode's token scores: ``zbar_i = 1/(i - s + 1) sum_{s <= j <= i} z_j``.

    Args:
        token_scores: ``[N]`` ``z`` in row-major order.
        rows: ``[N]`` long, the episode of each token (non-decreasing).
        num_rows: ``B``.

    Returns:
        ``[N]`` ``zbar`` (``s`` is the episode's first token); differentiable.
    """
    starts = _row_starts(rows, num_rows)
    total = torch.cumsum(token_scores, 0)
    before = torch.where(starts > 0, total[(starts - 1).clamp(min=0)], torch.zeros_like(total))
    position = torch.arange(len(rows), device=rows.device) - starts + 1
    return (total - before) / position.to(token_scores.dtype)


def reward_model_loss(
    token_scores: torch.Tensor, rows: torch.Tensor, num_rows: int, success: torch.Tensor
) -> tuple[torch.Tensor, Metrics]:
    """Token reward model: ``L_RM = E_tau [ BCE( sigmoid(1/n sum_i z_i), 1[success] ) ]``.

    Args:
        token_scores: ``[N]`` scores ``z_i`` at the positions that predict the action tokens, differentiable.
        rows: ``[N]`` the episode of each token.
        num_rows: ``B``; episodes without action tokens are left out.
        success: ``[B]`` bool outcomes.

    Returns:
        The scalar loss (mean over episodes) and metrics ``rm_loss``, ``rm_accuracy`` (sign of the mean score
        against the outcome).
    """
    sums = token_scores.new_zeros(num_rows).index_add(0, rows, token_scores)
    counts = token_scores.new_zeros(num_rows).index_add(0, rows, torch.ones_like(token_scores))
    present = counts > 0
    mean = sums[present] / counts[present]
    label = success[present].to(mean.dtype)
    loss = F.binary_cross_entropy_with_logits(mean, label)
    accuracy = ((mean.detach() > 0) == label.bool()).float().mean()
    return loss, {"rm_loss": loss.item(), "rm_accuracy": accuracy.item()}


def token_weights(
    token_scores: torch.Tensor, rows: torch.Tensor, num_rows: int, success: torch.Tensor
) -> torch.Tensor:
    """Importance of each action token from the token reward model (no gradient).

    ``q_i = sigmoid(zbar_i)`` with ``zbar`` the cumulative mean (:func:`cumulative_mean`);
    ``w_i = max(2 q_i - 1, 0)`` in successful episodes, ``max(1 - 2 q_i, 0)`` in failed ones. A zero-initialised
    head gives ``q = 0.5`` and ``w = 0`` everywhere: the policy learns nothing until the reward model does, which
    is why it trains alone for the first steps.

    Args:
        token_scores: ``[N]`` ``z_i`` (detached inside).
        rows: ``[N]``.
        num_rows: ``B``.
        success: ``[B]`` bool.

    Returns:
        ``[N]`` weights in ``[0, 1]``.
    """
    q = torch.sigmoid(cumulative_mean(token_scores.detach(), rows, num_rows))
    positive = success.to(torch.bool)[rows]
    return torch.where(positive, 2 * q - 1, 1 - 2 * q).clamp(min=0)


def oreal_policy_loss(
    token_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    rows: torch.Tensor,
    advantage: torch.Tensor,
    success: torch.Tensor,
    weight: torch.Tensor,
    eta: float = 0.5,
    kl_coef: float = 0.01,
    norms: tuple[float, float, float] | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """OREAL policy loss: advantage-weighted BC on successes, policy gradient on failures, k3 KL.

    ``L = 1/N+ sum_{i in +} w_i A (-log pi_i) - eta/N- sum_{i in -} w_i A exp(log pi_i - sg[log pi_i])
    + kl_coef/N sum_i (e^{d_i} - d_i - 1)``, ``d_i = log pi_ref_i - log pi_i``, ``A`` the episode's advantage.

    Args:
        token_logp: ``[N]`` policy log-probs of the action tokens, differentiable.
        ref_logp: ``[N]`` reference log-probs (no gradient).
        rows: ``[N]`` the episode of each token.
        advantage: ``[B]`` episode advantages (RLOO over its group; no gradient).
        success: ``[B]`` bool, which episodes are positives.
        weight: ``[N]`` token weights (``w+`` / ``w-``, :func:`token_weights`; detached inside).
        eta: weight of the negative term (paper and code: 0.5).
        kl_coef: coefficient of the k3 KL (code: 0.01).
        norms: ``(N+, N-, N)`` token counts to divide by. With gradient accumulation pass the optimizer step's
            counts divided by its number of micro-batches, so the micro-batch losses average to the step's
            per-token loss; None: this batch's own counts.

    Returns:
        The scalar loss and metrics ``policy_loss`` (the total), ``positive_loss``, ``negative_loss``, ``kl``
        (the k3 estimate per token, before ``kl_coef``), ``logratio_mean``.
    """
    positive = success.to(torch.bool)[rows]
    a = advantage.detach().to(token_logp.dtype)[rows]
    w = weight.detach().to(token_logp.dtype)
    if norms is None:
        n_pos, n_all = int(positive.sum()), len(rows)
        norms = (n_pos, n_all - n_pos, n_all)
    n_pos, n_neg, n_all = (max(float(n), 1e-8) for n in norms)
    bc = torch.where(positive, w * a * -token_logp, torch.zeros_like(token_logp)).sum() / n_pos
    ratio = torch.exp(token_logp - token_logp.detach())
    pg = -eta * torch.where(positive, torch.zeros_like(token_logp), w * a * ratio).sum() / n_neg
    d = ref_logp.detach().to(token_logp.dtype) - token_logp
    k3 = torch.exp(d) - d - 1
    kl = k3.sum() / n_all
    loss = bc + pg + kl_coef * kl
    return loss, {
        "policy_loss": loss.item(),
        "positive_loss": bc.item(),
        "negative_loss": pg.item(),
        "kl": kl.item(),
        "logratio_mean": (-d.detach()).mean().item() if len(rows) else 0.0,
    }
