"""What every loss shares: the metrics type, tokens summed into segments, per-episode means.

Shapes: ``B`` episodes, ``S`` states (segments) per episode (padded, ``state_mask`` marks real ones), ``N`` action
tokens in the whole batch (flattened, in row-major order of the action mask). Per-episode means (``1/T`` in the
equations) are averaged over the batch, so equal-sized micro-batches with gradient accumulation give exactly the
loss of the full batch.
"""

from __future__ import annotations

import torch

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


def masked_row_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` -> scalar: mean over rows (with at least one state) of the masked mean over states."""
    mask = mask.to(x.dtype)
    counts = mask.sum(dim=1)
    present = counts > 0
    return ((x * mask).sum(dim=1)[present] / counts[present]).mean()


def squared_errors(
    values: torch.Tensor,
    target: torch.Tensor,
    state_mask: torch.Tensor,
    after: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Metrics]:
    """A critic's squared errors ``(V - sg[target])^2`` at the states, joined by those at the afterstates.

    Args:
        values: ``[B, S]`` ``V(s_h)``, differentiable.
        target: ``[B, S]`` (detached inside).
        state_mask: ``[B, S]`` bool.
        after: ``(values, targets, mask)`` at the afterstates, each ``[B, T]`` (targets detached inside), or None.

    Returns:
        ``[B, S (+ T)]`` errors, their mask (for :func:`masked_row_mean`), and with afterstates the metric
        ``afterstate_value_loss`` (their mean alone).
    """
    errors, mask, metrics = (values - target.detach()) ** 2, state_mask, {}
    if after is not None:
        after_values, after_targets, after_mask = after
        after_errors = (after_values - after_targets.detach()) ** 2
        metrics["afterstate_value_loss"] = masked_row_mean(after_errors.detach(), after_mask).item()
        errors, mask = torch.cat([errors, after_errors], dim=1), torch.cat([state_mask, after_mask], dim=1)
    return errors, mask, metrics


def value_metrics(values: torch.Tensor, target: torch.Tensor, state_mask: torch.Tensor) -> Metrics:
    """``value_mean`` and ``target_mean`` over the real states."""
    m = state_mask.to(values.dtype)
    return {
        "value_mean": ((values.detach() * m).sum() / m.sum()).item(),
        "target_mean": ((target.detach() * m).sum() / m.sum()).item(),
    }
