"""Loss functions of the learner: pure tensor functions that return ``(loss, metrics)``.

No model calls, no optimizer, no globals; every shape and the equation in each docstring. One module per
method, all names re-exported here (``losses.oreo_value_loss``, ``losses.dqo.lambda_returns``):

* :mod:`~agentrl.losses.common`: ``Metrics``, :func:`segment_sum`, :func:`row_mean`, :func:`masked_row_mean`;
* :mod:`~agentrl.losses.logprobs`: action-token log-probs and the KL regulariser, chunked;
* :mod:`~agentrl.losses.oreo`: OREO (Wang et al. 2024) value / policy losses and targets;
* :mod:`~agentrl.losses.dqo`: DQO (Liu et al. 2024) lambda-returns, importance weight, value / policy losses;
* :mod:`~agentrl.losses.oreal`: OREAL (Lyu et al. 2025) advantages, token reward model, policy loss;
* :mod:`~agentrl.losses.baselines`: SFT (with an optional observation-token loss) and DPO.
"""

from agentrl.losses import dqo, oreal
from agentrl.losses.baselines import dpo_loss, sft_loss, sft_obs_loss
from agentrl.losses.common import Metrics, masked_row_mean, row_mean, segment_sum
from agentrl.losses.logprobs import token_logps, token_logps_and_kl, token_logps_and_topk_kl
from agentrl.losses.oreo import afterstate_targets, oreo_policy_loss, oreo_value_loss, soft_bellman_targets

__all__ = [
    "Metrics", "afterstate_targets", "dpo_loss", "dqo", "masked_row_mean", "oreal", "oreo_policy_loss",
    "oreo_value_loss", "row_mean", "segment_sum", "sft_loss", "sft_obs_loss", "soft_bellman_targets", "token_logps",
    "token_logps_and_kl", "token_logps_and_topk_kl",
]  # fmt: skip
