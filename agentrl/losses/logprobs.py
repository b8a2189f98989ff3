"""Action-token log-probs and the KL regulariser, chunked over the vocabulary (no ``[B, L, V]`` tensor).

``N`` action tokens, ``V`` vocabulary; see :mod:`agentrl.losses.common` for the other shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


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
