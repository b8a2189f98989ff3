"""Which items go into which micro-batch, and how they are collated: the data order of exact resume.

An *item* is an episode index (a pair of them for DPO). The data position is a pure function of the global
micro-batch counter, so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import torch

from agentrl.data import TokenizedEpisode, collate
from agentrl.learn_config import LearnConfig
from agentrl.learner_steps import CRITIC_ALGOS
from agentrl.training_data import ReferenceCache

GROUP_WINDOW = 16  # --group-by-length sorts windows of this many batches


def micro_batch(
    items: list, micro: int, batch_size: int, seed: int, lengths: list[int] | None = None
) -> list:
    """Items of global micro-batch ``micro``: epoch ``e`` visits the items in a permutation seeded by
    ``seed + e``, so the data position is a pure function of the micro-batch counter (exact resume).

    With ``lengths`` (tokens per item) batches are grouped by length, as Hugging Face's ``group_by_length``
    does: the permutation is cut into windows of ``GROUP_WINDOW`` batches, each window is sorted by length and
    cut into batches, and the batches are shuffled. Episodes of similar length share a batch, so less of each
    batch is padding (in random batches of ALFWorld demonstrations ~40% of the computed tokens are).
    """
    per_epoch = max(1, len(items) // batch_size)
    epoch, pos = divmod(micro, per_epoch)
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(len(items), generator=generator).tolist()
    if lengths is not None:
        order = order[: per_epoch * batch_size]  # the ragged tail is dropped either way
        window = GROUP_WINDOW * batch_size
        grouped = []
        for start in range(0, len(order), window):
            grouped += sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches = [grouped[b * batch_size : (b + 1) * batch_size] for b in range(per_epoch)]
        shuffle = torch.randperm(per_epoch, generator=generator).tolist()
        return [items[i] for i in batches[shuffle[pos]]]
    return [items[i] for i in order[pos * batch_size : (pos + 1) * batch_size]]


def grouping_lengths(algo: str, group_by_length: bool | None, size: list[int], items: list) -> list[int] | None:
    """Per-item lengths for :func:`micro_batch` to group by, or None for random batches.

    ``group_by_length=None`` groups for every algorithm without a critic (not OREO, DQO, OREAL). Agent episodes that succeed are short and
    failures run to the step cap (median 722 vs 1,486 tokens in seed 0 of bench/alfworld_mini/small.yaml), so
    length-sorted windows make batches of one outcome: 285 of that run's 300 OREO batches, against 20 of 300
    random ones. The critic then chases each batch's mean return instead of telling states apart. DPO items are
    (success, failure) pairs, grouped by the longer of the two.
    """
    if not (group_by_length if group_by_length is not None else algo not in CRITIC_ALGOS):
        return None
    return [max(size[c], size[r]) for c, r in items] if algo == "dpo" else size


def collate_items(
    algo: str,
    episodes: list[TokenizedEpisode],
    chosen: list,
    pad_id: int,
    ref: ReferenceCache | None,
    advantages: list[float] | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`agentrl.data.collate` of the chosen items; with ``advantages`` (OREAL) also ``advantage [B]`` and
    ``success [B]`` bool."""
    if algo == "dpo":  # items are (success, failure) index pairs
        idx = [c for c, _ in chosen] + [r for _, r in chosen]
    else:
        idx = chosen
    batch = collate([episodes[i] for i in idx], pad_id, indices=idx, ref=ref)
    if advantages is not None:
        batch["advantage"] = torch.tensor([advantages[i] for i in idx], dtype=torch.float32)
        batch["success"] = torch.tensor([episodes[i].success for i in idx], dtype=torch.bool)
    return batch


def micro_index(step: int, j: int, grad_accum: int, world: int, rank: int) -> int:
    """Global micro-batch ``j`` of optimizer step ``step`` on process ``rank``: process ``rank`` takes every
    ``world``-th micro-batch of the one global sequence."""
    return (step * grad_accum + j) * world + rank


def step_token_norms(
    cfg: LearnConfig, episodes: list[TokenizedEpisode], items: list, lengths: list[int] | None, step: int, world: int
) -> tuple[float, float, float]:
    """OREAL's per-token normalisers ``(N+, N-, N)``: action tokens of the successes, failures and all episodes
    of optimizer step ``step`` (every micro-batch of every process), per micro-batch."""
    positive = negative = 0
    for j in range(cfg.grad_accum):
        for rank in range(world):
            micro = micro_index(step, j, cfg.grad_accum, world, rank)
            for i in micro_batch(items, micro, cfg.batch_size, cfg.seed, lengths):
                if episodes[i].success:
                    positive += episodes[i].num_actions
                else:
                    negative += episodes[i].num_actions
    k = cfg.grad_accum * world
    return positive / k, negative / k, (positive + negative) / k
