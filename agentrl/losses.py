"""Loss functions of the learner: pure tensor functions that return ``(loss, metrics)``.

No model calls, no optimizer, no globals. Notation (OREO, Wang et al. 2024, arXiv:2412.16145):

* a trajectory is states ``s_0..s_{T-1}`` and actions ``a_0..a_{T-1}``; ``R`` is its terminal reward;
* ``lr_t = log pi(a_t|s_t) - log pi_ref(a_t|s_t)`` is the policy/reference log-ratio of action ``t``;
* an *action* is one token (token level), one step (step level: the sum of its tokens' log-ratios) or the
  whole response (response level). The learner maps tokens to actions ("segments") with
  :func:`segment_sum`, so the OREO losses below work on ``[B, S]`` tensors for every level.

Shapes: ``B`` episodes, ``S`` states (segments) per episode (padded, ``state_mask`` marks real ones),
``N`` action tokens in the whole batch (flattened, in row-major order of the action mask), ``V`` vocabulary.
Per-episode means (``1/T`` in the equations) are averaged over the batch, so equal-sized micro-batches with
gradient accumulation give exactly the loss of the full batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

Metrics = dict[str, float]


def segment_sum(
    token_values: torch.Tensor, flat_segment: torch.Tensor, num_rows: int, num_segments: int
) -> torch.Tensor:
    """Sums per-token values into per-segment values.

    Args:
        token_values: ``[N]`` one value per action token (e.g. its log-ratio).
        flat_segment: ``[N]`` long, ``row * num_segments + segment`` of each token.
        num_rows: ``B``.
        num_segments: ``S``.

    Returns:
        ``[B, S]`` with ``out[b, k] = sum of token_values over the tokens of segment k of episode b``.
    """
    out = token_values.new_zeros(num_rows * num_segments)
    return out.index_add(0, flat_segment, token_values).view(num_rows, num_segments)


def row_mean(token_values: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Mean over episodes of the per-episode mean of ``token_values``.

    Args:
        token_values: ``[N]``.
        rows: ``[N]`` long, the episode (row) of each token.
        num_rows: ``B``; rows without tokens are left out of the mean.

    Returns:
        A scalar: ``1/B' sum_b (1/N_b) sum_{i in b} x_i`` over the ``B'`` rows with ``N_b > 0``.
    """
    sums = token_values.new_zeros(num_rows).index_add(0, rows, token_values)
    counts = torch.zeros(num_rows, dtype=token_values.dtype, device=token_values.device)
    counts = counts.index_add(0, rows, torch.ones_like(token_values))
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def _masked_row_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` -> scalar: mean over rows (with at least one state) of the masked mean over states."""
    mask = mask.to(x.dtype)
    counts = mask.sum(dim=1)
    present = counts > 0
    return ((x * mask).sum(dim=1)[present] / counts[present]).mean()


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
    errors, mask = (values - target) ** 2, state_mask
    metrics: Metrics = {}
    if after_values is not None:
        if after_targets is None or after_mask is None:
            raise ValueError("oreo_value_loss: after_values needs after_targets and after_mask")
        after_errors = (after_values - after_targets.detach()) ** 2
        metrics["afterstate_value_loss"] = _masked_row_mean(after_errors.detach(), after_mask).item()
        errors, mask = torch.cat([errors, after_errors], dim=1), torch.cat([state_mask, after_mask], dim=1)
    loss = _masked_row_mean(errors, mask)
    m = state_mask.to(values.dtype)
    return loss, {
        "value_loss": loss.item(),
        "value_mean": ((values.detach() * m).sum() / m.sum()).item(),
        "target_mean": ((target * m).sum() / m.sum()).item(),
        **metrics,
    }


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
    loss = _masked_row_mean(residual**2, state_mask)
    return loss, {"policy_loss": loss.item(), "logratio_mean": (lr.detach().sum() / m.sum()).item()}


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, numerically stable (Maechler 2012)."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _chunk_full(
    logits: torch.Tensor, targets: torch.Tensor, ref_logits: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    token = logp.gather(-1, targets[:, None]).squeeze(-1)
    ref = torch.log_softmax(ref_logits.float(), dim=-1)
    kl = (logp.exp() * (logp - ref)).sum(-1)
    return token, kl


def _chunk_topk(
    logits: torch.Tensor, targets: torch.Tensor, ref_ids: torch.Tensor, ref_logp: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    token = logp.gather(-1, targets[:, None]).squeeze(-1)
    if ref_ids.shape[-1] >= logits.shape[-1]:  # the "top-k" is the whole vocabulary: exact KL
        full_ref = torch.full_like(logp, -torch.inf).scatter(-1, ref_ids, ref_logp.float())
        return token, (logp.exp() * (logp - full_ref)).sum(-1)
    top = logp.gather(-1, ref_ids)  # [n, k] policy log-probs of the reference's top-k tokens
    ref = ref_logp.float()
    kl_top = (top.exp() * (top - ref)).sum(-1)
    rest = _log1mexp(torch.logsumexp(top, dim=-1))  # log of the policy mass outside the top-k
    ref_rest = _log1mexp(torch.logsumexp(ref, dim=-1)).clamp(min=-23.0)
    kl_rest = rest.exp() * (rest - ref_rest)
    return token, kl_top + kl_rest


def _chunked(fn, tensors: list[torch.Tensor], chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Applies ``fn`` to row chunks; with autograd on, each chunk is recomputed in backward (checkpoint)
    so only one chunk's fp32 ``[chunk, V]`` intermediates are alive at any time."""
    outs: list[tuple[torch.Tensor, ...]] = []
    n = tensors[0].shape[0]
    for start in range(0, n, chunk_size):
        parts = [t[start : start + chunk_size] for t in tensors]
        if torch.is_grad_enabled() and parts[0].requires_grad:
            outs.append(checkpoint(fn, *parts, use_reentrant=False))
        else:
            outs.append(fn(*parts))
    if not outs:
        empty = tensors[0].new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def token_logps_and_kl(
    logits: torch.Tensor, targets: torch.Tensor, ref_logits: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Action-token log-probs and the full-vocabulary ``KL(pi || pi_ref)`` at each action position.

    ``logp_i = log softmax(z_i)[y_i]``; ``KL_i = sum_v pi(v|s_i) (log pi(v|s_i) - log pi_ref(v|s_i))``,
    the regulariser ``L_reg = 1/T sum_t KL_t`` of Eq. 9/10. Computed ``chunk_size`` rows at a time in fp32:
    the ``[N, V]`` inputs stay in the model's dtype and no two fp32 ``[N, V]`` tensors ever exist at once
    (the reference implementation's ``kl_div`` on two fp32 ``[B, L, V]`` tensors is its memory hot spot).

    Args:
        logits: ``[N, V]`` policy logits at the positions that predict the action tokens.
        targets: ``[N]`` long, the action tokens.
        ref_logits: ``[N, V]`` reference logits at the same positions (no gradient).
        chunk_size: rows per chunk.

    Returns:
        ``logp [N]`` (fp32, differentiable) and ``kl [N]`` (fp32, differentiable).
    """
    return _chunked(_chunk_full, [logits, targets, ref_logits.detach()], chunk_size)


def token_logps_and_topk_kl(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ref_topk_ids: torch.Tensor,
    ref_topk_logps: torch.Tensor,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`token_logps_and_kl`, with the reference given by its cached top-k log-probs.

    The KL is taken between ``pi`` and ``pi_ref`` coarsened to ``k + 1`` outcomes: the reference's top-k
    tokens ``K`` and "any other token":
    ``KL_i = sum_{v in K} pi(v) (log pi(v) - log pi_ref(v)) + pi(rest) (log pi(rest) - log pi_ref(rest))``
    with ``pi(rest) = 1 - sum_{v in K} pi(v)``. Coarsening never increases a KL (data processing), so this is
    a lower bound of the full KL that is exact when ``k = V`` and tight while the policy keeps its mass
    where the reference has it, which is what the regulariser enforces. It lets the reference be computed
    once per dataset (cached), so no reference forward runs during training.

    Args:
        logits: ``[N, V]`` policy logits.
        targets: ``[N]`` long, the action tokens.
        ref_topk_ids: ``[N, k]`` long, the reference's top-k token ids at each position.
        ref_topk_logps: ``[N, k]`` their reference log-probs.
        chunk_size: rows per chunk.

    Returns:
        ``logp [N]`` and ``kl [N]`` (fp32, differentiable).
    """
    return _chunked(_chunk_topk, [logits, targets, ref_topk_ids, ref_topk_logps.detach()], chunk_size)


def token_logps(logits: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """``[N, V]`` logits, ``[N]`` targets -> ``[N]`` fp32 log-probs ``log softmax(z_i)[y_i]``, chunked."""

    def fn(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = -F.cross_entropy(z.float(), y, reduction="none")
        return logp, logp

    return _chunked(fn, [logits, targets], chunk_size)[0]


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
