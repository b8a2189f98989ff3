"""`learn --algo dqo` and `--algo oreal` on models the project did not create (tiny Qwen2 and GPT-NeoX with a
word-level tokenizer and a Zephyr chat template built here): they train, resume exactly, save and load; DQO
reduces to OREO; OREAL's step-wide token normalisers make gradient accumulation exact; data warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agentrl.cli import main
from agentrl.cli.learn import Config
from agentrl.critic import ValueModel
from agentrl.data import TokenizedEpisode
from agentrl.learner import train
from agentrl.learner_setup import data_source_warnings, oreal_items
from agentrl.models import ModelError
from agentrl.policies.scoring import CriticScorer
from agentrl.trajectory import TrajectoryWriter

from .helpers import episode

# successes of the samples of each task: two groups have one outcome only (OREAL drops them)
GROUPS = [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]


def write_groups(path: Path, model: Path | None, groups=GROUPS) -> Path:
    """Samples of each task as a rollout of ``model`` writes them (``None``: expert demonstrations)."""
    with TrajectoryWriter(path) as writer:
        for task, outcomes in enumerate(groups):
            for sample, ok in enumerate(outcomes):
                ep = episode(task, sample, bool(ok))
                if model is not None:
                    ep.policy, ep.meta = "react", {"model": str(model), "sample": sample}
                writer.write(ep)
    return path


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _run(model: Path, out: Path, data: Path, **kwargs) -> list[dict]:
    train(Config(data=[str(data)], model=str(model), out=str(out), **kwargs))
    return _metrics(out)


CASES = {
    "qwen2-dqo": ("qwen2_dir", dict(algo="dqo", dqo_lambda=0.8, critic_lr=1e-2)),
    "neox-dqo-lora": ("neox_dir", dict(algo="dqo", lora=True, critic_lora=True, lr=3e-3, critic_lr=3e-3)),
    "qwen2-oreal-lora": ("qwen2_dir", dict(algo="oreal", lora=True, critic_lora=True, lr=3e-3, critic_lr=3e-3)),
    "neox-oreal": ("neox_dir", dict(algo="oreal")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_trains_a_foreign_model_and_its_outputs_load(name, request, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fixture, extra = CASES[name]
    model_dir = request.getfixturevalue(fixture)
    data = write_groups(tmp_path / "rollouts.jsonl", model_dir)
    kwargs = {"lr": 1e-3, "batch_size": 8, "max_steps": 6, "oreal_rm_warmup": 2, "lora_r": 4, **extra}
    metrics = _run(model_dir, tmp_path / "out", data, **kwargs)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    out = capsys.readouterr().out
    assert "expert" not in out and "another model" not in out  # the data are this model's own samples
    # 8 OREAL items in batches of 8: 2 warm-up steps, then 4 policy steps are 4 passes
    assert ("4 policy passes over the data" in out) == (kwargs["algo"] == "oreal")
    if kwargs["algo"] == "dqo":
        # the weighted losses grow with w; their unweighted errors must fall
        assert metrics[-1]["value_mse"] < metrics[0]["value_mse"]
        assert metrics[-1]["policy_mse"] < metrics[0]["policy_mse"]
        assert all(0 < m["is_weight_mean"] <= torch.e + 1e-6 for m in metrics)
    else:
        assert metrics[-1]["rm_loss"] < metrics[0]["rm_loss"]
        # the reward model trains alone for 2 steps: no policy gradient, no policy loss yet
        assert [m["grad_norm"] == 0 for m in metrics] == [True, True, False, False, False, False]
        assert metrics[1]["policy_loss"] is None and metrics[2]["policy_loss"] is not None
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "policy")
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(policy) is type(original)
    before, after = original.state_dict(), policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after if k in before), "no policy weight changed"
    critic = ValueModel.from_pretrained(tmp_path / "out" / "critic")
    assert critic.value_head.weight.abs().sum() > 0  # trained from zero and saved
    # DQO's critic is trained at afterstates (search may read it), OREAL's reward model never is
    assert critic.trained_at == {"algo": kwargs["algo"], "level": "token", "afterstates": kwargs["algo"] == "dqo"}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if kwargs["algo"] == "dqo":  # best-of-K / beam search take it
        CriticScorer.from_pretrained(str(tmp_path / "out" / "critic"), tokenizer)
    else:
        with pytest.raises(ModelError, match="not trained at afterstates"):
            CriticScorer.from_pretrained(str(tmp_path / "out" / "critic"), tokenizer)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.isfinite(critic.values(ids)).all() and critic.values(ids).abs().sum() > 0


@pytest.mark.parametrize("algo,fixture", [("dqo", "qwen2_dir"), ("oreal", "neox_dir")])
def test_resume_reaches_the_same_metrics_and_weights(algo, fixture, request, tmp_path):
    """Stop at step 3 of 6 and resume (OREAL's reward model trains alone for 2 steps: the resumed run starts
    with the policy training): every logged number and the final policy and critic equal an uninterrupted run."""
    model_dir = request.getfixturevalue(fixture)
    data = write_groups(tmp_path / "rollouts.jsonl", model_dir)
    common = dict(data=[str(data)], model=str(model_dir), algo=algo, lr=2e-3, batch_size=2, grad_accum=2,
                  max_steps=6, lr_schedule="cosine", warmup_steps=2, oreal_rm_warmup=2, lora=algo == "dqo",
                  critic_lora=algo == "dqo", lora_r=4, lora_alpha=8, dqo_lambda=0.5)  # fmt: skip
    train(Config(out=str(tmp_path / "a"), **common))
    summary = train(Config(out=str(tmp_path / "b"), stop_after=3, **common))
    assert summary["steps"] == 3 and not (tmp_path / "b" / "policy").exists()
    train(Config(out=str(tmp_path / "b"), resume=True, **common))
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]
    for ma, mb in zip(a, b, strict=True):
        assert ma.keys() == mb.keys()
        for key, value in ma.items():
            if isinstance(value, float) and key not in ("tokens_per_s", "step_time_s"):
                assert value == pytest.approx(mb[key], abs=1e-6), (ma["step"], key)
    for folder, name in (("policy", "model.safetensors"), ("critic", "value_head.safetensors")):
        wa, wb = load_file(str(tmp_path / "a" / folder / name)), load_file(str(tmp_path / "b" / folder / name))
        assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_dqo_with_lambda_one_and_no_weight_is_oreo(tiny_model_dir, tmp_path):
    """lambda = 1, w = 1 and OREO's KL weight: DQO's targets and losses are OREO's (at the states and at the
    afterstates, both trained by default), so are the updates."""
    data = write_groups(tmp_path / "d.jsonl", None)
    common = dict(lr=1e-3, batch_size=4, max_steps=3, alpha=0.01)
    oreo = _run(tiny_model_dir, tmp_path / "oreo", data, algo="oreo", **common)
    dqo = _run(tiny_model_dir, tmp_path / "dqo", data, algo="dqo", dqo_lambda=1.0, dqo_weight="none", **common)
    for a, b in zip(oreo, dqo, strict=True):
        for key in ("loss", "value_loss", "afterstate_value_loss", "policy_loss", "kl", "grad_norm",
                    "critic_grad_norm"):  # fmt: skip
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)


def test_oreal_gradient_accumulation_equals_one_batch(qwen2_dir, tmp_path):
    """Per-token losses divide by the whole optimizer step's token counts: batch 2 x 2 accumulated micro-batches
    (which hold different numbers of success and failure tokens) gives the updates of batch 4.

    The reward model trains alone at step 1: with its zero-initialised head every token weight is 0, and the
    policy's only gradient would be the k3 KL's at pi = pi_ref, i.e. rounding noise that Adam scales up to
    full-size steps (as it would in any run without the warmup)."""
    data = write_groups(tmp_path / "r.jsonl", qwen2_dir)
    common = dict(algo="oreal", lr=1e-3, max_steps=3, oreal_rm_warmup=1, oreal_pairs=False)
    one = _run(qwen2_dir, tmp_path / "one", data, batch_size=4, **common)
    two = _run(qwen2_dir, tmp_path / "two", data, batch_size=2, grad_accum=2, **common)
    assert "positive_loss" not in one[0] and "positive_loss" in one[1]  # the policy trains from step 2
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "rm_loss", "policy_loss", "positive_loss", "negative_loss", "kl", "grad_norm",
                    "critic_grad_norm"):  # fmt: skip
            assert a.get(key) == pytest.approx(b.get(key), abs=1e-6), (a["step"], key)


def test_oreal_epochs_count_policy_passes_after_the_warmup(qwen2_dir, tmp_path, capsys):
    """8 items (one pair per mixed task), batch 4: one policy pass is 2 steps, after 3 warm-up steps: 5 steps, and
    no stale-data warning (the policy's 2 steps see each item once)."""
    data = write_groups(tmp_path / "r.jsonl", qwen2_dir)
    metrics = _run(qwen2_dir, tmp_path / "o", data, algo="oreal", batch_size=4, epochs=1.0, oreal_rm_warmup=3)
    assert [m["policy_loss"] is None for m in metrics] == [True, True, True, False, False]
    assert "warning" not in capsys.readouterr().out


def _tokenized(task: str, success: bool, reward: float) -> TokenizedEpisode:
    return TokenizedEpisode(input_ids=[1, 2], action_mask=[False, True], segments=[-1, 0], state_positions=[0],
                            after_positions=[1], reward=reward, success=success, task_id=task, episode_id="e")  # fmt: skip


def test_oreal_items_drop_one_outcome_groups_and_keep_rloo_advantages():
    """Task a: [win, fail, fail], scored +1 / -1 whatever the (mapped) episode rewards are, as the authors' code
    does: A_win = 1 - (-2)/2 = 2, A_fail = -1 - 0/2 = -1. Task b: all wins, task c: one failure: dropped
    (advantage 0, never trained on)."""
    eps = [_tokenized("a", True, 1.0), _tokenized("b", True, 1.0), _tokenized("a", False, 0.0),
           _tokenized("a", False, 0.0), _tokenized("b", True, 1.0), _tokenized("c", False, 0.0)]  # fmt: skip
    items, adv, counts = oreal_items(eps, seed=0, pairs=False)
    assert items == [0, 2, 3]
    assert adv == pytest.approx([2.0, 0.0, -1.0, -1.0, 0.0, 0.0])
    assert counts == {"groups": 3, "mixed_groups": 1, "all_success": 1, "all_failure": 1}
    pairs, adv, _ = oreal_items(eps, seed=0, pairs=True)
    assert len(pairs) == 2 and pairs[0] == 0 and pairs[1] in (2, 3)
    assert adv[pairs[1]] == -1.0 and adv[5 - pairs[1]] == 0.0  # the failure left out is not trained on
    assert {oreal_items(eps, seed=s, pairs=True)[0][1] for s in range(20)} == {2, 3}  # the seed draws


def test_data_source_warnings(tiny_model_dir, tmp_path):
    own = write_groups(tmp_path / "own.jsonl", tiny_model_dir)
    demos = write_groups(tmp_path / "demos.jsonl", None)
    other = write_groups(tmp_path / "other.jsonl", tmp_path)

    def warnings(algo: str, data: Path, passes: float = 1.0, **kw) -> str:
        cfg = Config(algo=algo, data=[str(data)], model=str(tiny_model_dir), out=str(tmp_path / "o"), **kw)
        return " ".join(data_source_warnings(cfg, str(tiny_model_dir), passes))

    assert warnings("dqo", own) == "" and warnings("oreal", own) == ""
    assert "24 expert demonstration(s)" in warnings("dqo", demos) and "importance weight" in warnings("dqo", demos)
    assert warnings("dqo", demos, dqo_weight="none") == ""  # no weight, no assumption
    assert "another model" in warnings("oreal", other) and "on-policy" in warnings("oreal", other)
    assert "2 policy passes" in warnings("oreal", own, passes=2.0)
    assert warnings("oreo", demos) == "" and warnings("dqo", own, passes=2.0) == ""


def test_cli_checks(tiny_model_dir, tmp_path, capsys):
    data = write_groups(tmp_path / "d.jsonl", None, groups=[[1, 1], [0, 0]])
    args = ["learn", "--data", str(data), "--model", str(tiny_model_dir)]
    assert main([*args, "--algo", "oreal", "--level", "step", "--out", str(tmp_path / "a")]) == 2
    assert "level" in capsys.readouterr().err
    assert main([*args, "--algo", "dqo", "--dqo-weight", "trajectory", "--out", str(tmp_path / "b")]) == 2
    assert "dqo_weight" in capsys.readouterr().err
    assert main([*args, "--algo", "dqo", "--dqo-lambda", "1.5", "--out", str(tmp_path / "c")]) == 2
    assert main([*args, "--algo", "oreal", "--out", str(tmp_path / "d")]) == 2  # no task has both outcomes
    assert "both a success and a failure" in capsys.readouterr().err
    assert main([*args, "--algo", "sft", "--critic-init", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert "trains no critic" in capsys.readouterr().err
    assert main([*args, "--algo", "oreal", "--critic-init", str(tmp_path), "--out", str(tmp_path / "f")]) == 2
    assert "not a critic folder" in capsys.readouterr().err
    assert Config(algo="dqo", data=["x"], out="o").alpha == 0.0  # no OREO KL term by default
    assert Config(algo="oreal", data=["x"], out="o").alpha == 0.01


@pytest.mark.parametrize("layout", ["full", "lora-on-policy-base"])
def test_critic_init_starts_from_a_saved_critic(layout, qwen2_dir, tmp_path):
    """A critic saved by one run and loaded into a freshly built one (value head + backbone or adapter) gives the
    same values; a critic of the other layout is refused by name."""
    from agentrl.learner_setup import build_critic, build_policy, load_critic_weights

    lora = layout != "full"

    def fresh():
        policy = build_policy(str(qwen2_dir), lora, 4, 8, "cpu")
        return build_critic(policy, str(qwen2_dir), lora, 4, 8, "cpu")

    torch.manual_seed(0)
    trained = fresh()
    with torch.no_grad():  # stands in for training: every trainable tensor moves away from its initial value
        for p in trained.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    trained.save_pretrained(tmp_path / "critic")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    critic = fresh()
    assert not torch.allclose(critic.values(ids), trained.values(ids))
    load_critic_weights(critic, tmp_path / "critic")
    assert torch.allclose(critic.values(ids), trained.values(ids), atol=1e-6)
    other = build_critic(build_policy(str(qwen2_dir), not lora, 4, 8, "cpu"), str(qwen2_dir), not lora, 4, 8, "cpu")
    with pytest.raises(ModelError, match="critic_init"):
        load_critic_weights(other, tmp_path / "critic")
