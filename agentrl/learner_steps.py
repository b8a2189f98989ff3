"""One function per algorithm for one micro-batch: forward, loss from :mod:`agentrl.losses`, backward.

Each takes the :class:`agentrl.learner.Run`, a collated batch (on the device) and the scale of its loss
(``1 / grad_accum``, so the accumulated gradients are the full batch's), and returns the micro-batch's metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from agentrl import losses
from agentrl.learner_setup import action_logits, masked_logits, reference_logits

if TYPE_CHECKING:
    from agentrl.learner import Run


def _oreo_micro(run: Run, batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """OREO on one micro-batch: critic step on Eq. 8, policy step on Eq. 9/10 + alpha * KL.

    Default order: policy forward, critic forward, value backward, policy backward (two forwards, two
    backwards; both autograd graphs are alive together). ``--low-memory``: the critic first runs without
    gradients to give ``sg[V]`` for the policy loss, the policy backward frees the policy graph, then the
    critic runs with gradients (one graph at a time, for one more critic forward). Same numbers either way.
    With ``--afterstates`` (default) the critic is also trained at every turn's end-of-turn token, where
    best-of-K and beam search read it (:func:`agentrl.losses.afterstate_targets`).
    """
    cfg, policy, critic = run.cfg, run.policy, run.critic
    b, s = batch["state_mask"].shape

    def critic_values() -> tuple[torch.Tensor, torch.Tensor]:  # V at the states [B, S] and afterstates [B, T]
        with run.autocast():
            values = critic.values(batch["input_ids"], batch["attention_mask"])
        return values.gather(1, batch["state_positions"]), values.gather(1, batch["after_positions"])

    def value_step(
        values: tuple[torch.Tensor, torch.Tensor], token_lr: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        states, after = values
        after_args = {}
        if cfg.afterstates:
            token_dense = token_lr.new_zeros(batch["action_mask"].shape).masked_scatter(
                batch["action_mask"], token_lr
            )
            targets = losses.afterstate_targets(
                token_dense, batch["after_positions"], batch["after_mask"], batch["reward"], cfg.beta
            )
            after_args = {"after_values": after, "after_targets": targets, "after_mask": batch["after_mask"]}
        step_lr = losses.segment_sum(token_lr, batch["action_segments"], b, s)
        loss, metrics = losses.oreo_value_loss(
            states, step_lr, batch["state_mask"], batch["reward"], cfg.beta, **after_args
        )
        (loss * scale).backward()  # frees the critic's graph
        return loss, metrics

    if cfg.low_memory:
        with torch.no_grad():
            values = critic_values()
    with run.autocast():
        logits = action_logits(policy, batch)  # [N, V], only the positions that predict actions
        if cfg.kl_topk > 0:
            logp, kl = losses.token_logps_and_topk_kl(
                logits, batch["targets"], batch["ref_topk_ids"], batch["ref_topk_logps"], cfg.chunk_size
            )
        else:  # exact full-vocabulary KL: one reference forward per micro-batch
            ref_logits = reference_logits(policy, run.reference, batch)
            logp, kl = losses.token_logps_and_kl(logits, batch["targets"], ref_logits, cfg.chunk_size)
    token_lr = logp - batch["ref_logps"]  # [N]
    step_lr = losses.segment_sum(token_lr, batch["action_segments"], b, s)  # [B, S]
    if not cfg.low_memory:
        values = critic_values()
        value_loss, vm = value_step(values, token_lr.detach())
    policy_loss, pm = losses.oreo_policy_loss(
        values[0], step_lr, batch["state_mask"], batch["reward"], cfg.beta
    )
    kl_mean = losses.row_mean(kl, batch["action_rows"], b)
    ((policy_loss + cfg.alpha * kl_mean) * scale).backward()
    if cfg.low_memory:
        value_loss, vm = value_step(critic_values(), token_lr.detach())
    total = value_loss.item() + policy_loss.item() + cfg.alpha * kl_mean.item()
    return {**vm, **pm, "kl": kl_mean.item(), "loss": total}


def _policy_logps(
    run: Run, batch: dict[str, torch.Tensor], with_kl: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Policy log-probs of the action tokens ``[N]`` and, with ``with_kl``, ``KL(pi || pi_ref)`` ``[N]`` at
    their positions (against the cached reference top-k, or exact with ``--kl-topk 0``); else ``None``."""
    cfg, policy = run.cfg, run.policy
    with run.autocast():
        logits = action_logits(policy, batch)  # [N, V], only the positions that predict actions
        if not with_kl:
            return losses.token_logps(logits, batch["targets"], cfg.chunk_size), None
        if cfg.kl_topk > 0:
            return losses.token_logps_and_topk_kl(
                logits, batch["targets"], batch["ref_topk_ids"], batch["ref_topk_logps"], cfg.chunk_size
            )
        ref_logits = reference_logits(policy, run.reference, batch)
        return losses.token_logps_and_kl(logits, batch["targets"], ref_logits, cfg.chunk_size)


def _state_values(run: Run, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's values at the state positions ``[B, S]`` and at the afterstates ``[B, T]``."""
    with run.autocast():
        values = run.critic.values(batch["input_ids"], batch["attention_mask"])
    return values.gather(1, batch["state_positions"]), values.gather(1, batch["after_positions"])


def _after_segments(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, T]`` the segment of each turn's end-of-turn token (an action token: every turn's last segment)."""
    b, s = batch["state_mask"].shape
    dense = torch.full(batch["action_mask"].shape, -1, dtype=torch.long, device=batch["action_mask"].device)
    dense[batch["action_mask"]] = batch["action_segments"] - batch["action_rows"] * s
    return dense.gather(1, batch["after_positions"])


def _dqo_micro(run: Run, batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """DQO on one micro-batch: critic step on the lambda-return regression, policy step on the Q regression
    (+ alpha * KL when ``alpha > 0``), each weighted by the clipped trajectory importance weight where
    ``--dqo-weight`` says. The order (and ``--low-memory``) is OREO's: see :func:`_oreo_micro`."""
    cfg = run.cfg
    b, s = batch["state_mask"].shape
    mask, reward = batch["state_mask"], batch["reward"]
    if cfg.low_memory:
        with torch.no_grad():
            values = _state_values(run, batch)
    logp, kl = _policy_logps(run, batch, with_kl=cfg.alpha > 0)
    step_lr = losses.segment_sum(logp - batch["ref_logps"], batch["action_segments"], b, s)  # [B, S]
    weight = losses.dqo.trajectory_weight(step_lr, mask, cfg.dqo_clip)
    value_weight = weight if cfg.dqo_weight in ("both", "value") else None
    policy_weight = weight if cfg.dqo_weight in ("both", "policy") else None

    returns: torch.Tensor | None = (
        None  # G_h, from the first values computed (the critic steps after the batch)
    )

    def value_step(values: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        nonlocal returns
        states, after = values
        if returns is None:
            returns = losses.dqo.lambda_returns(states, step_lr, mask, reward, cfg.beta, cfg.dqo_lambda)
        after_args = None
        if cfg.afterstates:  # trained where best-of-K and beam search read the critic
            targets = losses.dqo.afterstate_targets(
                returns, mask, reward, _after_segments(batch), batch["after_mask"]
            )
            after_args = (after, targets, batch["after_mask"])
        loss, metrics = losses.dqo.dqo_value_loss(states, returns, mask, value_weight, after_args)
        (loss * scale).backward()
        return loss, metrics

    if not cfg.low_memory:
        values = _state_values(run, batch)
        value_loss, vm = value_step(values)
    if returns is None:
        returns = losses.dqo.lambda_returns(values[0], step_lr, mask, reward, cfg.beta, cfg.dqo_lambda)
    policy_loss, pm = losses.dqo.dqo_policy_loss(
        values[0], step_lr, returns, mask, reward, cfg.beta, policy_weight
    )
    kl_mean = losses.row_mean(kl, batch["action_rows"], b) if kl is not None else None
    ((policy_loss + (cfg.alpha * kl_mean if kl_mean is not None else 0.0)) * scale).backward()
    if cfg.low_memory:
        value_loss, vm = value_step(_state_values(run, batch))
    out = {**vm, **pm, "is_weight_mean": weight.mean().item()}
    if kl_mean is not None:
        out["kl"] = kl_mean.item()
    return {**out, "loss": value_loss.item() + policy_loss.item() + cfg.alpha * out.get("kl", 0.0)}


def _oreal_micro(run: Run, batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """OREAL on one micro-batch: the token reward model's BCE step, then (after ``--oreal-rm-warmup`` optimizer
    steps) the policy step on advantage-weighted BC + reshaped policy gradient + k3 KL, with token weights from
    the reward model's scores before its update."""
    cfg = run.cfg
    b, rows, success = batch["input_ids"].shape[0], batch["action_rows"], batch["success"]
    with run.autocast():
        values = run.critic.values(batch["input_ids"], batch["attention_mask"])
    scores = values[:, :-1][batch["action_mask"][:, 1:]]  # [N] z_i at the position predicting action token i
    rm_loss, rm = losses.oreal.reward_model_loss(scores, rows, b, success)
    (rm_loss * scale).backward()
    if run.step < cfg.oreal_rm_warmup:
        return {**rm, "loss": rm_loss.item()}
    weight = losses.oreal.token_weights(scores, rows, b, success)
    logp, _ = _policy_logps(run, batch, with_kl=False)
    policy_loss, pm = losses.oreal.oreal_policy_loss(
        logp, batch["ref_logps"], rows, batch["advantage"], success, weight, cfg.oreal_eta, cfg.alpha,
        norms=run.token_norms,
    )  # fmt: skip
    (policy_loss * scale).backward()
    total = rm_loss.item() + policy_loss.item()
    return {**rm, **pm, "token_weight_mean": weight.mean().item(), "loss": total}


def _sft_micro(run: Run, batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """SFT (and RS, whose data holds successful episodes only): NLL of the action tokens (with
    ``--obs-loss-weight W > 0``: plus ``W`` times the NLL of the observation tokens, :func:`_sft_obs_micro`)."""
    if run.cfg.obs_loss_weight > 0:
        return _sft_obs_micro(run, batch, scale)
    logp, _ = _policy_logps(run, batch, with_kl=False)
    loss, m = losses.sft_loss(logp, batch["action_rows"], batch["input_ids"].shape[0])
    (loss * scale).backward()
    return {**m, "loss": loss.item(), "policy_loss": loss.item()}


def _sft_obs_micro(run: Run, batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """SFT + ``W`` x the observation tokens' NLL (:func:`agentrl.losses.sft_obs_loss`): one decoder forward,
    the LM head at the positions that predict action and observation tokens."""
    cfg = run.cfg
    with run.autocast():
        logits, obs_logits = masked_logits(run.policy, batch, ("action_mask", "obs_mask"))
        logp = losses.token_logps(logits, batch["targets"], cfg.chunk_size)
        obs_logp = losses.token_logps(obs_logits, batch["obs_targets"], cfg.chunk_size)
    loss, m = losses.sft_obs_loss(
        logp, batch["action_rows"], obs_logp, batch["obs_rows"], batch["input_ids"].shape[0], cfg.obs_loss_weight
    )
    (loss * scale).backward()
    return {**m, "loss": loss.item(), "policy_loss": loss.item()}


def _dpo_micro(run: Run, batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """DPO: rows ``0..P-1`` of the batch are the successful episodes, rows ``P..2P-1`` their failed partners."""
    rows = batch["input_ids"].shape[0]
    logp, _ = _policy_logps(run, batch, with_kl=False)
    seq = logp.new_zeros(rows).index_add(0, batch["action_rows"], logp)
    ref = batch["ref_logps"].new_zeros(rows).index_add(0, batch["action_rows"], batch["ref_logps"])
    p = rows // 2
    loss, m = losses.dpo_loss(seq[:p], seq[p:], ref[:p], ref[p:], run.cfg.beta)
    (loss * scale).backward()
    return {**m, "loss": loss.item(), "policy_loss": loss.item()}


MICRO_STEPS = {
    "oreo": _oreo_micro, "dqo": _dqo_micro, "oreal": _oreal_micro, "sft": _sft_micro, "rs": _sft_micro,
    "dpo": _dpo_micro,
}  # fmt: skip
# A value model trains beside the policy (OREAL's is its token reward model).
CRITIC_ALGOS = ("oreo", "dqo", "oreal")
# They need the reference's log-probs (cached before any update).
REFERENCE_ALGOS = ("oreo", "dqo", "oreal", "dpo")
