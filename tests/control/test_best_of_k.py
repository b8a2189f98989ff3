"""Best-of-K: oracle critic beats plain sampling; candidates/values recorded; critic scoring reads the right token."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrl.policies.base import Context, Decision
from agentrl.policies.best_of_k import BestOfK, CriticScorer, OracleScorer, dedupe, end_of_turn_id

from .fake_env import Corridor, NoisyExpert, remaining_plan, run_episodes


def test_oracle_best_of_k_beats_sampling_on_fake_env() -> None:
    """K=5 samples contain the expert action with probability 1 - 0.7^5 = 0.83 per step, K=1 with 0.3."""
    envs = [Corridor(length=5, task_id=f"c{i}") for i in range(12)]
    greedy = run_episodes(NoisyExpert(p=0.3, seed=1), envs, max_steps=8)
    envs = [Corridor(length=5, task_id=f"c{i}") for i in range(12)]
    scorer = OracleScorer(remaining_plan)
    best = run_episodes(BestOfK(NoisyExpert(p=0.3, seed=1), scorer, k=5), envs, max_steps=8)
    rate_greedy = sum(r[0] for r in greedy) / len(greedy)
    rate_best = sum(r[0] for r in best) / len(best)
    assert rate_best > rate_greedy
    assert rate_best >= 0.75
    # one scoring call per lock-step (all envs together), not one per env
    assert scorer.calls == max(r[1] for r in best)
    decision = best[0][2][0]
    assert decision.candidates and decision.value == max(c.value for c in decision.candidates)
    assert decision.action in {c.action for c in decision.candidates}


def test_ties_are_broken_by_first_sample_and_duplicates_dropped() -> None:
    class Fixed:
        name = "fixed"

        def __init__(self, actions):
            self.actions = actions

        def propose(self, contexts, k):
            return [[Decision(action=a, raw=f"Action: {a}") for a in self.actions] for _ in contexts]

    ctx = Context(slot=0, messages=[], observation="", info={}, env_kind="alfworld")
    flat = OracleScorer(lambda c, a: 1.0)
    policy = BestOfK(Fixed(["look", "Look ", "go east", "inventory"]), flat, k=4)
    (decision,) = policy.act([ctx])
    assert decision.action == "look"  # all tie: first sampled
    assert [c.action for c in decision.candidates] == ["look", "go east", "inventory"]
    assert len(dedupe([Decision("a", ""), Decision(" A", ""), Decision("b", "")])) == 2


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k >= 1"):
        BestOfK(NoisyExpert(), OracleScorer(remaining_plan), k=0)


class PositionValues:
    """A stand-in critic whose value at each token is its position (so the read index is visible)."""

    def __init__(self):
        import torch

        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def parameters(self):
        yield self.weight

    def values(self, input_ids, attention_mask):
        import torch

        self.calls.append(tuple(input_ids.shape))
        return torch.arange(input_ids.shape[1], dtype=torch.float32).expand(input_ids.shape[0], -1) * attention_mask


def test_critic_scorer_reads_end_of_turn_in_one_forward(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = PositionValues()
    scorer = CriticScorer(model, tokenizer)
    contexts = [Context(slot=i, messages=[{"role": "user", "content": "You arrive at fridge 1." * (i + 1)}],
                        observation="", info={}, env_kind="alfworld") for i in range(2)]
    cands = [[Decision("go to fridge 1", "Action: go to fridge 1"), Decision("look", "Action: look")],
             [Decision("take mug 1 from countertop 1", "Think: a mug.\nAction: take mug 1 from countertop 1")]]
    scores = scorer.score(contexts, cands)
    assert len(model.calls) == 1 and model.calls[0][0] == 3  # 3 candidates, one forward
    eot = end_of_turn_id(tokenizer)
    assert eot == tokenizer.convert_tokens_to_ids("<|im_end|>")
    for i, ctx in enumerate(contexts):
        for j, cand in enumerate(cands[i]):
            msgs = [*ctx.messages, {"role": "assistant", "content": cand.raw}]
            ids = tokenizer.apply_chat_template(msgs, tokenize=True)
            ids = ids if isinstance(ids, list) else list(ids["input_ids"])
            last_eot = max(k for k, t in enumerate(ids) if t == eot)
            assert scores[i][j] == float(last_eot)
    chunked = CriticScorer(model, tokenizer, max_batch=1)
    assert chunked.score(contexts, cands) == scores and chunked.forwards == 3


def test_best_of_k_on_react_and_value_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Real pieces: ReAct on the transformers backend samples K in one call; a saved critic scores them."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentrl.backends.base import Sampling
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.critic import ValueModel
    from agentrl.policies.react import ReActPolicy

    backend = TransformersBackend.from_pretrained(str(tiny_model_dir))
    policy = ReActPolicy(backend, Sampling(temperature=1.0, max_new_tokens=6, seed=0), example=False)
    torch.manual_seed(0)
    critic = ValueModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), hidden_size=64)
    torch.nn.init.normal_(critic.value_head.weight)  # a non-zero head, so candidates get different values
    critic.trained_at = {"level": "step", "afterstates": True}  # as the learner records it
    critic.save_pretrained(tmp_path / "critic")
    scorer = CriticScorer.from_pretrained(str(tmp_path / "critic"), backend.tokenizer)
    controller = BestOfK(policy, scorer, k=3)
    info = {"task": "put a clean mug in coffeemachine.", "admissible_actions": []}
    contexts = [policy.begin(i, "You are in the middle of a room.", info, "alfworld") for i in range(2)]
    decisions = controller.act(contexts)
    # one generate call (n=3); the critic: one batched forward for both chats, one for all candidates' tails
    assert backend.stats.calls == 1 and scorer.forwards == 2
    # the factory `agentrl eval --best-of` uses, through make_policy
    from agentrl.policies import make_policy

    built = make_policy("best_of_k", generator=backend, sampling=Sampling(temperature=1.0, max_new_tokens=6),
                        critic=str(tmp_path / "critic"), k=2)
    assert isinstance(built, BestOfK) and built.k == 2 and isinstance(built.scorer, CriticScorer)
    with pytest.raises(ValueError, match="temperature > 0"):
        make_policy("best_of_k", generator=backend, sampling=Sampling(temperature=0.0), critic=str(tmp_path), k=2)
    for ctx, decision in zip(contexts, decisions, strict=True):
        assert 1 <= len(decision.candidates) <= 3
        assert decision.value == max(c.value for c in decision.candidates)
        # the batched (padded) value equals the value of the chosen candidate scored alone
        alone = scorer.score([ctx], [[decision]])[0][0]
        assert alone == pytest.approx(decision.value, abs=1e-4)


def test_prefix_shared_cached_scoring_equals_full_sequences(tiny_model_dir: Path) -> None:
    """Chat once + candidate tails on its KV cache (carried across steps) == every full sequence re-read."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.critic import ValueModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    critic = ValueModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), hidden_size=64).eval()
    torch.nn.init.normal_(critic.value_head.weight)
    shared = CriticScorer(critic, tokenizer)
    plain = CriticScorer(critic, tokenizer, max_length=10_000)  # max_length forces the plain path
    assert shared.shared and not plain.shared
    contexts = [Context(slot=i, messages=[{"role": "system", "content": "Act."},
                                          {"role": "user", "content": "You see a fridge 1." * (i + 1)}],
                        observation="", info={}, env_kind="alfworld", memory={"cache_key": f"k{i}"})
                for i in range(2)]
    cands = [[Decision("go to fridge 1", "Action: go to fridge 1"), Decision("look", "Think: hm.\nAction: look")],
             [Decision("open fridge 1", "Action: open fridge 1")]]
    for step in range(2):
        a, b = shared.score(contexts, cands), plain.score(contexts, cands)
        assert [v for g in a for v in g] == pytest.approx([v for g in b for v in g], abs=1e-4)
        for ctx, group in zip(contexts, cands, strict=True):  # take the first candidate, see an observation
            ctx.messages += [{"role": "assistant", "content": group[0].raw}, {"role": "user", "content": f"obs {step}"}]
    # the second step fed only the new turn + observation + tails, not the whole chat again
    full = sum(len(shared.encode(c, d)[0]) for c, g in zip(contexts, cands, strict=True) for d in g)
    assert shared.fed_tokens < plain.fed_tokens and shared.forwards == 4 and plain.forwards == 2
    assert full > 0
    shared.release("k0")
    assert "k0" not in shared._cache and "k1" in shared._cache
    # a new episode (new key) reuses the cached prefix of another chat (same system prompt and task)
    fresh = Context(slot=0, messages=contexts[1].messages[:2], observation="", info={}, env_kind="alfworld",
                    memory={"cache_key": "new"})
    before = shared.fed_tokens
    got = shared.score([fresh], [cands[1]])
    assert got[0] == pytest.approx(plain.score([fresh], [cands[1]])[0], abs=1e-4)
    assert shared.fed_tokens - before < len(shared.encode(fresh, cands[1][0])[0]) // 2


def _admissible_controller(tiny_model_dir: Path, k: int, weight: float = 0.0, thoughts: bool = True):
    import torch
    from transformers import AutoModelForCausalLM

    from agentrl.backends.base import Sampling
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.critic import ValueModel
    from agentrl.policies.react import ReActPolicy

    backend = TransformersBackend.from_pretrained(str(tiny_model_dir))
    policy = ReActPolicy(backend, Sampling(max_new_tokens=6), example=False, thoughts=thoughts,
                         action_space="admissible")  # fmt: skip
    torch.manual_seed(0)
    critic = ValueModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), hidden_size=64).eval()
    torch.nn.init.normal_(critic.value_head.weight)
    scorer = CriticScorer(critic, backend.tokenizer)
    return backend, policy, scorer, BestOfK(policy, scorer, k=k, logprob_weight=weight)


ADMISSIBLE = ["go to countertop 1", "go to cabinet 1", "open cabinet 1", "look", "inventory", "examine sinkbasin 1"]


@pytest.mark.parametrize("thoughts", [True, False])
def test_best_of_k_over_the_policys_top_k_distinct_admissible_commands(tiny_model_dir: Path, thoughts) -> None:
    """No sampling: the K candidates are the policy's K best commands; the critic's best is taken."""
    backend, policy, scorer, controller = _admissible_controller(tiny_model_dir, k=4, thoughts=thoughts)
    info = {"task_id": "t", "task": "put a clean mug in coffeemachine.", "admissible_actions": ADMISSIBLE}
    contexts = [policy.begin(i, f"You are in room {i}.", info, "alfworld") for i in range(2)]
    top = policy.sample(contexts, 4)
    backend.reset_stats()
    decisions = controller.act(contexts)
    # one free call for the thought (if any) and one constrained call; the critic reads all 8 candidates in two
    assert backend.stats.calls == (2 if thoughts else 1) and scorer.forwards == 2
    for ctx, decision, ranked in zip(contexts, decisions, top, strict=True):
        cands = decision.candidates
        assert [c.action for c in cands] == [d.action for d in ranked]  # the policy's order, 4 distinct commands
        assert len({c.action for c in cands}) == 4 and all(c.action in ADMISSIBLE for c in cands)
        assert [c.logprob for c in cands] == pytest.approx([d.logprob for d in ranked], abs=1e-5)
        alone = scorer.score([ctx], [ranked])[0]
        assert [c.value for c in cands] == pytest.approx(alone, abs=1e-4)
        assert decision.action == max(cands, key=lambda c: c.value).action
        assert all(c.score == pytest.approx(c.value) for c in cands)  # c = 0: the score is V


def test_logprob_weight_combines_the_critic_with_the_policy(tiny_model_dir: Path) -> None:
    """score = V + c * mean log pi (hand check on the recorded numbers); a huge c follows the policy's best."""
    info = {"task_id": "t", "task": "put a mug in fridge.", "admissible_actions": ADMISSIBLE}
    for weight in (0.5, 1e6):
        _, policy, _, controller = _admissible_controller(tiny_model_dir, k=3, weight=weight, thoughts=False)
        ctx = policy.begin(0, "You are in the middle of a room.", info, "alfworld")
        (decision,) = controller.act([ctx])
        for c in decision.candidates:
            assert c.score == pytest.approx(c.value + weight * c.logprob / c.tokens)
        assert decision.action == max(decision.candidates, key=lambda c: c.score).action
        if weight > 1:
            assert decision.action == decision.candidates[0].action  # the policy's own top command
    from agentrl.backends.base import Sampling
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.policies.react import ReActPolicy

    sampled = BestOfK(ReActPolicy(TransformersBackend.from_pretrained(str(tiny_model_dir)),
                                  Sampling(temperature=1.0, max_new_tokens=4, seed=0), example=False),
                      OracleScorer(lambda ctx, a: 0.0), k=2, logprob_weight=1.0)  # fmt: skip
    ctx = sampled.begin(0, "You are in a room.", info, "alfworld")
    (decision,) = sampled.act([ctx])  # free text: the transformers backend reports each sampled turn's log-prob
    for c in decision.candidates:
        assert c.logprob is not None and c.logprob < 0 and c.score == pytest.approx(c.logprob / c.tokens)
