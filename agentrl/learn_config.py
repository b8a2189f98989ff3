"""The options of one training run (``agentrl learn``) and :func:`learn`, which checks its paths and trains.

:class:`LearnConfig` is the typed config of :func:`agentrl.learner.train`; ``agentrl learn`` parses its flags into
one, recipes build one per learning stage.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from agentrl.agent_format import report, write_for_training
from agentrl.config import ConfigError, option, require

ALGOS = ("oreo", "dqo", "oreal", "sft", "rs", "dpo")
DQO_WEIGHTS = ("both", "policy", "value", "none")


@dataclass
class LearnConfig:
    """Options of `agentrl learn` (paper defaults: beta 0.03, alpha 0.01/0.1/0.3 by level, lr 5e-6)."""

    algo: str = option(
        "oreo",
        help="oreo | dqo | oreal (groups of samples per task, on-policy per round) | sft | rs (SFT on successful "
        "episodes) | dpo (success vs failure pairs)",
    )
    data: list[str] = option([], help="trajectory JSONL file(s), comma-separated")
    model: str = option("default", help="model folder, hub name, or `default` (SmolLM2-135M-Instruct)")
    out: str = option("", help="output folder: policy/, critic/, metrics.jsonl, checkpoints/")
    level: str = option("token", help="OREO level: token | step | response")
    step_split: str = option(
        "turn",
        help="step level: turn (one step per assistant turn) | line (math) | line+sentence (MATH: also '. ')",
    )
    lora: bool = option(False, help="train the policy as a LoRA adapter (the reference is the base, no copy)")
    critic_lora: bool = option(
        False, help="critic as a LoRA adapter (with --lora: on the policy's frozen base)"
    )
    critic_init: str | None = option(
        None,
        help="start the critic (OREAL: the token reward model) from this critic folder of an earlier run, "
        "e.g. the previous iterate round's OUT/critic (same layout: full or LoRA)",
    )
    lora_r: int = option(64, help="LoRA rank (paper: 64)")
    lora_alpha: int = option(64, help="LoRA alpha (paper: 64)")
    beta: float = option(
        0.03, help="KL coefficient beta of the soft Bellman equation (DPO: its inverse temperature)"
    )
    alpha: float | None = option(
        None,
        help="KL regulariser weight (OREO default by level: token 0.01, step 0.1, response 0.3; DQO: 0, none; "
        "OREAL: 0.01 on its k3 estimate)",
    )
    dqo_lambda: float = option(1.0, help="DQO: lambda of the lambda-return targets (1: Monte Carlo, 0: one-step)")
    dqo_clip: float = option(math.e, help="DQO: clip c of the trajectory importance weight min(pi/pi_ref, c)")
    dqo_weight: str = option(
        "both", help="DQO: which losses the importance weight multiplies: both | policy | value | none"
    )
    oreal_eta: float = option(0.5, help="OREAL: weight of the failed samples' policy-gradient term")
    oreal_rm_warmup: int = option(
        10,
        help="OREAL: optimizer steps at the start in which only the token reward model trains (with --epochs they "
        "come on top of the epochs' steps)",
    )
    oreal_pairs: bool = option(
        True,
        help="OREAL: train on one success and one failure per task (the authors' code); off: every sample of "
        "each task with both outcomes",
    )
    lr: float = option(5e-6, help="policy learning rate (LoRA usually wants ~1e-4)")
    critic_lr: float | None = option(
        None, help="critic learning rate (default: 1e-4 with --critic-lora, else --lr)"
    )
    batch_size: int = option(8, help="episodes per micro-batch (DPO: pairs)")
    grad_accum: int = option(1, help="micro-batches per optimizer step")
    max_steps: int | None = option(None, help="optimizer steps (overrides --epochs)")
    epochs: float = option(
        1.0, help="passes over the data when --max-steps is not given (OREAL: the policy's passes)"
    )
    stop_after: int | None = option(None, help="stop (with a checkpoint) after this step, as if interrupted")
    save_every: int = option(0, help="checkpoint every N steps (0: only at the end)")
    seed: int = option(0, help="seed of initialisation and data order")
    resume: bool = option(False, help="continue from the latest checkpoint in OUT/checkpoints")
    max_length: int = option(2048, help="longest episode in tokens; longer episodes are skipped")
    cap_positives: bool = option(
        False,
        help="keep at most as many successes per problem (task id) as it has failures (a seeded choice; a problem "
        "without a failure keeps none); the kept/dropped counts are printed",
    )
    group_by_length: bool | None = option(
        None,
        help="batch episodes of similar length together: less padding, batch order stays random (default: on, "
        "except OREO/DQO/OREAL, whose successes and failures differ in length, so grouped batches would be all "
        "one outcome)",
    )
    reward_map: str = option(
        "none",
        help="raw:mapped terminal rewards; `none` (default) = raw, the paper's 1 for a success and 0 otherwise; "
        "`0:-1,1:1` is the OREO reference code's default (doubles every log-ratio term of the targets)",
    )
    afterstates: bool = option(
        True,
        help="OREO/DQO: also train the critic at each assistant turn's end-of-turn token, the state after the "
        "action, where best-of-K, beam search, replay and the critic report read it; off: the reference "
        "implementation's states only (such a critic is refused by search)",
    )
    obs_loss_weight: float = option(
        0.0,
        help="SFT/RS: add W x the next-token loss on the environment's observation tokens (user turns) to the "
        "action tokens' loss, an auxiliary task that ties the names the model reads to those it writes "
        "(0: off, plain SFT)",
    )
    obs_loss_turns: str = option(
        "later",
        help="--obs-loss-weight: which user turns count: later (every one after the first: the env's answers to "
        "actions) | all (also the first: the task and initial observation)",
    )
    history: int | None = option(
        None,
        help="SFT/RS: train each assistant turn on the prompt a ReAct agent with `--history N` sends (system + "
        "opening user turn + the last N turns: one training sequence per turn) and record history N in the "
        "policy's agent_config.json, so train and act-time prompts match (default: whole chats)",
    )
    kl_topk: int | None = option(
        None,
        help="KL(pi||pi_ref): 0 = exact (a reference forward per micro-batch), k = against the cached reference "
        "top-k (a lower bound; its coverage is reported); default: exact for vocabularies up to 4096 tokens, "
        "else top-64",
    )
    max_grad_norm: float = option(1.0, help="gradient clipping norm (per model)")
    lr_schedule: str = option("constant", help="constant | cosine (to 0.1 x lr)")
    warmup_steps: int = option(0, help="linear warmup steps")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    low_memory: bool = option(
        False, help="OREO/DQO: one autograd graph at a time (the critic runs once more, without gradients)"
    )
    gradient_checkpointing: bool = option(
        False, help="recompute layer activations in backward (less memory, ~1 forward more)"
    )
    device: str = option("auto", help="auto | cpu | cuda | cuda:N")
    precision: str = option("auto", help="auto (bf16 autocast on GPU, fp32 on CPU) | bf16 | fp32")
    chunk_size: int = option(1024, help="rows per chunk of the vocabulary-sized log-softmax / KL")
    log_every: int = option(1, help="print metrics every N steps (metrics.jsonl gets every step)")

    def __post_init__(self) -> None:
        require(self.algo in ALGOS, f"`algo` must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        require(
            self.level in ("token", "step", "response"),
            f"`level` must be token|step|response, got {self.level!r}",
        )
        require(
            self.step_split in ("turn", "line", "line+sentence"),
            f"`step_split`: turn|line|line+sentence, got {self.step_split!r}",
        )
        require(bool(self.data), "`data` is required: one or more trajectory JSONL files")
        require(bool(self.out), "`out` is required: the output folder")
        require(self.beta > 0, f"`beta` must be > 0, got {self.beta}")
        require(self.lr > 0, f"`lr` must be > 0, got {self.lr}")
        require(self.batch_size >= 1 and self.grad_accum >= 1, "`batch_size` and `grad_accum` must be >= 1")
        require(self.max_steps is None or self.max_steps >= 1, "`max_steps` must be >= 1")
        require(self.epochs > 0, "`epochs` must be > 0")
        require(self.kl_topk is None or self.kl_topk >= 0, "`kl_topk` must be >= 0")
        require(
            self.lr_schedule in ("constant", "cosine"),
            f"`lr_schedule`: constant|cosine, got {self.lr_schedule!r}",
        )
        require(
            self.precision in ("auto", "bf16", "fp32"), f"`precision`: auto|bf16|fp32, got {self.precision!r}"
        )
        require(
            self.chunk_size >= 1 and self.log_every >= 1 and self.save_every >= 0,
            "bad chunk_size/log_every/save_every",
        )
        require(0.0 <= self.dqo_lambda <= 1.0, f"`dqo_lambda` must be in [0, 1], got {self.dqo_lambda}")
        require(self.dqo_clip > 0, f"`dqo_clip` must be > 0, got {self.dqo_clip}")
        require(self.dqo_weight in DQO_WEIGHTS, f"`dqo_weight`: {'|'.join(DQO_WEIGHTS)}, got {self.dqo_weight!r}")
        require(self.oreal_eta >= 0 and self.oreal_rm_warmup >= 0, "`oreal_eta`, `oreal_rm_warmup` must be >= 0")
        require(
            self.algo != "oreal" or self.level == "token",
            f"OREAL weighs single tokens: `level` must be token, got {self.level!r}",
        )
        require(
            not self.critic_init or self.algo in ("oreo", "dqo", "oreal"),
            f"`critic_init`: {self.algo} trains no critic",
        )
        require(self.obs_loss_weight >= 0, f"`obs_loss_weight` must be >= 0, got {self.obs_loss_weight}")
        require(
            not self.obs_loss_weight or self.algo in ("sft", "rs"),
            f"`obs_loss_weight`: only sft and rs train with the observation loss, not {self.algo}",
        )
        require(self.obs_loss_turns in ("later", "all"), f"`obs_loss_turns`: later|all, got {self.obs_loss_turns!r}")
        require(self.history is None or self.history >= 0, f"`history` must be >= 0, got {self.history}")
        require(
            self.history is None or self.algo in ("sft", "rs"),
            f"`history`: only sft and rs train on history windows (the others need whole episodes), not {self.algo}",
        )
        require(
            self.history is None or not self.cap_positives,
            "`history` with `cap_positives`: successes would be counted per window; cap the episodes before",
        )
        require(self.alpha is None or self.alpha >= 0, f"`alpha` must be >= 0, got {self.alpha}")
        if self.alpha is None:
            by_algo = {"dqo": 0.0, "oreal": 0.01}
            self.alpha = by_algo.get(self.algo, {"token": 0.01, "step": 0.1, "response": 0.3}[self.level])
        if self.critic_lr is None:
            self.critic_lr = 1e-4 if self.critic_lora else self.lr


def learn(cfg: LearnConfig) -> None:
    """Trains ``cfg`` (see :func:`agentrl.learner.train`) after checking its input files and output folder.

    Raises:
        ConfigError: ``out`` already holds a run and ``resume`` is off; a ``data`` file is missing.
    """
    out = Path(cfg.out)
    if not cfg.resume and ((out / "metrics.jsonl").exists() or (out / "checkpoints").exists()):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    for path in cfg.data:
        if not Path(path).is_file():
            raise ConfigError(f"`data`: {'a folder, not a file' if Path(path).is_dir() else 'no such file'}: {path}")
    if cfg.critic_init and not (Path(cfg.critic_init) / "value_model.json").is_file():
        raise ConfigError(f"`critic_init`: {cfg.critic_init} is not a critic folder (no value_model.json)")
    from agentrl.learner import train  # torch and transformers: only when a run trains

    train(cfg)
    # the policy talks the way its training episodes do (thought-free, prompt variant, ...)
    folders = [out / "policy", out / "policy_lora"]
    fmt = write_for_training(folders, cfg.data, cfg.model)
    if cfg.history is not None:  # it is to be sent the windows it trained on
        fmt = dataclasses.replace(fmt, history=cfg.history)
        for folder in folders:
            if folder.is_dir():
                fmt.save(folder)
    elif fmt.history is not None:
        report([
            f"the policy's agent format keeps the last {fmt.history} turns (from its episodes or base model), but "
            f"it trained on whole chats; `--history {fmt.history}` trains on the prompts the agent is sent"
        ])  # fmt: skip
