"""The objects an option set describes: envs (in this process or in worker processes), generator, critic, policy.

Every command builds these the same way, from the option groups of :mod:`agentrl.options`. An env that cannot
be made (unknown dataset, corrupt file, missing data), here or inside a worker process, raises
:class:`~agentrl.errors.EnvBuildError` naming the env and its options, which the CLI prints as one line.
"""

from __future__ import annotations

from typing import Any

from agentrl import agent_format
from agentrl.backends.openai_backend import OpenAIBackend
from agentrl.backends.transformers_backend import TransformersBackend
from agentrl.backends.vllm_backend import VLLMBackend
from agentrl.config import ConfigError
from agentrl.envs.workers import EnvPool, EnvStartError
from agentrl.errors import EnvBuildError
from agentrl.options import AgentOptions, EnvOptions, ModelOptions
from agentrl.policies import Policy, make_policy


def build_env(opts: EnvOptions) -> Any:
    """One env of ``opts`` in this process (``gymnasium.make``); build errors become :class:`EnvBuildError`."""
    import gymnasium

    try:
        return gymnasium.make(opts.env_id, **opts.env_kwargs())
    except Exception as err:  # noqa: BLE001 - whatever the env raises while loading its data is about the input
        raise EnvBuildError(f"cannot make env {opts.env_label()}: {err}") from None


def build_pool(opts: EnvOptions) -> Any:
    """``opts.num_envs`` envs in worker processes (:class:`agentrl.envs.workers.EnvPool`)."""

    try:
        return EnvPool(opts.env_id, opts.env_kwargs(), opts.num_envs, step_timeout=opts.step_timeout)
    except EnvStartError as err:
        raise EnvBuildError(f"cannot make env {opts.env_label()}: {err.reason}") from None


def build_generator(opts: ModelOptions, seed: int = 0) -> Any:
    """The generation backend ``opts.backend`` serving ``opts.model``."""
    if opts.backend == "transformers":

        return TransformersBackend.from_pretrained(opts.model, device=opts.device, dtype=opts.dtype,
                                                   carry_cache=opts.carry_cache)
    if opts.backend == "openai":

        return OpenAIBackend(base_url=str(opts.base_url), model=opts.model)

    return VLLMBackend(opts.model, seed=seed)


def build_scorer(opts: AgentOptions, generator: Any) -> Any:
    """The critic of ``opts.critic`` as an action scorer, reading chats with the generator's tokenizer."""
    from agentrl.policies.scoring import CriticScorer

    return CriticScorer.from_pretrained(str(opts.critic), getattr(generator, "tokenizer", None),
                                        device=opts.device, dtype=opts.dtype)


def build_policy(opts: AgentOptions, generator: Any = None) -> Policy:
    """The policy ``opts.policy`` (react, expert, random, best_of_k, dagger), on ``generator`` if it generates text.

    It talks in the agent format of :meth:`~agentrl.options.PolicyOptions.agent_format` (the options, else the
    model's ``agent_config.json``); a flag that disagrees with the model's file is printed as a warning here.

    Args:
        opts: the agent's options (policy, prompt, critic, best-of-K, model, sampling).
        generator: the text generator; default: :func:`build_generator` of ``opts`` for model policies.
    """
    if opts.uses_model and generator is None:
        generator = build_generator(opts, seed=opts.seed)
    try:
        fmt, warnings = agent_format.of_run(opts, generator)
    except agent_format.AgentFormatError as err:  # e.g. a served model's format that does not parse
        raise ConfigError(str(err)) from None
    agent_format.report(warnings)
    extra: dict[str, Any] = {}
    if opts.policy == "best_of_k":
        extra = {"critic": build_scorer(opts, generator), "k": opts.best_of, "logprob_weight": opts.logprob_weight}
    if opts.policy == "dagger":
        extra = {"beta": opts.beta}
    return make_policy(opts.policy, generator=generator, sampling=opts.sampling(), history=fmt.history,
                       example=fmt.example, thoughts=fmt.thoughts, action_space=fmt.action_space,
                       anti_loop=opts.anti_loop, seed=opts.seed, **extra)
