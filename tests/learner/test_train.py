"""The training loop: every algorithm / level / LoRA setting trains; exact resume; outputs load; CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agentrl.cli import main
from agentrl.critic import ValueModel
from agentrl.learn_config import LearnConfig as Config
from agentrl.learner import train

from .helpers import write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("traj") / "train.jsonl", tasks=4)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


CASES = {
    "oreo-token-full": dict(algo="oreo"),
    "oreo-step-lora-critic-lora": dict(
        algo="oreo", level="step", lora=True, critic_lora=True, lr=3e-3, critic_lr=3e-3
    ),
    "oreo-response-exact-kl": dict(algo="oreo", level="response", kl_topk=0),
    "oreo-token-lora-exact-kl": dict(algo="oreo", lora=True, kl_topk=0, lr=3e-3),
    "sft": dict(algo="sft"),
    "rs-lora": dict(algo="rs", lora=True, lr=3e-3),
    "dpo": dict(algo="dpo", beta=0.5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_algorithm_trains(name, data, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    kwargs = {"lr": 1e-3, "batch_size": 8, "max_steps": 5, **CASES[name]}
    out = tmp_path / name
    train(Config(data=[str(data)], model=str(tiny_model_dir), out=str(out), **kwargs))
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    if kwargs["algo"] == "oreo":
        assert metrics[-1]["value_loss"] < metrics[0]["value_loss"]
        assert all(m["kl"] is not None and m["kl"] >= -1e-6 for m in metrics)
        critic = ValueModel.from_pretrained(out / "critic")
        assert critic.value_head.weight.abs().sum() > 0  # the head trained and was saved
        if kwargs.get("critic_lora"):  # lora_B starts at zero: non-zero means the critic adapter trained
            lora_b = [p for n, p in critic.backbone.named_parameters() if "lora_B" in n]
            assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    before, after = _weights(tiny_model_dir), _weights(out / "policy")
    changed = [k for k in after if k in before and not torch.equal(before[k], after[k])]
    assert changed, "no policy weight changed"
    model = AutoModelForCausalLM.from_pretrained(out / "policy")  # plain HF checkpoint (merged for LoRA)
    assert model.config.vocab_size == AutoModelForCausalLM.from_pretrained(tiny_model_dir).config.vocab_size
    if kwargs.get("lora"):
        assert (out / "policy_lora" / "adapter_config.json").is_file()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora+critic-lora"])
def test_resume_reaches_the_same_metrics(lora, data, tiny_model_dir, tmp_path):
    """Stop at step 3 of 6 and resume: every logged loss and the final weights equal an uninterrupted run."""
    common = dict(
        data=[str(data)], model=str(tiny_model_dir), algo="oreo", lr=2e-3, batch_size=2, grad_accum=2, max_steps=6,
        lr_schedule="cosine", warmup_steps=2, lora=lora, critic_lora=lora, lora_r=4, lora_alpha=8,
    )  # fmt: skip
    train(Config(out=str(tmp_path / "a"), **common))
    summary = train(Config(out=str(tmp_path / "b"), stop_after=3, **common))
    assert summary["steps"] == 3 and not (tmp_path / "b" / "policy").exists()
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # a crash after step 3 left a torn line
        f.write('{"step": 4, "lo')
    train(Config(out=str(tmp_path / "b"), resume=True, **common))
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]
    for ma, mb in zip(a, b, strict=True):
        for key in ("loss", "value_loss", "policy_loss", "kl", "lr", "critic_lr", "grad_norm"):
            assert ma[key] == pytest.approx(mb[key], abs=1e-6), (ma["step"], key)
    wa, wb = _weights(tmp_path / "a" / "policy"), _weights(tmp_path / "b" / "policy")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_cli_learn_and_errors(data, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["learn", "--algo", "sft", "--data", str(data), "--model", str(tiny_model_dir), "--out", str(out)]
    assert main([*args, "--max-steps", "1", "--batch-size", "2"]) == 0
    assert main([*args, "--max-steps", "1"]) == 2  # the folder holds a run and --resume is missing
    assert "pass --resume" in capsys.readouterr().err
    assert main(["learn", "--algo", "ppo", "--data", str(data), "--out", str(out)]) == 2
    assert main(["learn", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["learn", "--data", str(data), "--out", str(tmp_path / "y"), "--levl", "step"]) == 2
    assert "did you mean" in capsys.readouterr().err
    from agentrl.trajectory import TrajectoryWriter

    from .helpers import episode

    with TrajectoryWriter(tmp_path / "failures.jsonl") as writer:
        writer.write(episode(0, 0, False))
    rs = ["learn", "--algo", "rs", "--data", str(tmp_path / "failures.jsonl"), "--model", str(tiny_model_dir)]
    assert main([*rs, "--out", str(tmp_path / "rs")]) == 2
    assert "no training data left" in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_data_parallel_equals_gradient_accumulation(data, tiny_model_dir, tmp_path):
    """torchrun with 2 CPU processes (gloo) x batch 2 sees the same micro-batches as one process with
    --grad-accum 2 and averages the same gradients: the logged metrics agree."""
    import os
    import subprocess
    import sys

    common = ["learn", "--data", str(data), "--model", str(tiny_model_dir), "--batch-size", "2", "--max-steps", "2",
              "--lr", "1e-3", "--lora", "--critic-lora", "--lora-r", "4", "--device", "cpu"]  # fmt: skip
    train(Config(out=str(tmp_path / "one"), data=[str(data)], model=str(tiny_model_dir), batch_size=2, grad_accum=2,
                 max_steps=2, lr=1e-3, lora=True, critic_lora=True, lora_r=4, device="cpu"))  # fmt: skip
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),  # a fixed port collides with another test run on the same machine
    ]
    script = "from agentrl.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*launcher, "--no-python", sys.executable, "-c", script, *common, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "value_loss", "policy_loss", "kl", "grad_norm"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)


@pytest.mark.parametrize("flag", ["gradient_checkpointing", "low_memory"])
def test_memory_options_change_memory_not_math(flag, data, tiny_model_dir, tmp_path):
    common = dict(data=[str(data)], model=str(tiny_model_dir), algo="oreo", lr=1e-3, batch_size=4, max_steps=2,
                  lora=True, critic_lora=True, lora_r=4)  # fmt: skip
    train(Config(out=str(tmp_path / "plain"), **common), save=False)
    train(Config(out=str(tmp_path / "gc"), **{flag: True}, **common), save=False)
    for a, b in zip(_metrics(tmp_path / "plain"), _metrics(tmp_path / "gc"), strict=True):
        # Recomputation may round differently: step 1's critic grad norms can be 2e-5 (relative) apart. Adam's
        # first update is ~lr * sign(g), so rounding of near-zero gradients moves step 2 by up to ~1.4e-4.
        rel = 1e-4 if a["step"] == 1 else 1e-3
        for key in ("loss", "value_loss", "kl", "grad_norm", "critic_grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-6), (a["step"], key)


def test_group_by_length_batches_cover_each_epoch_and_cut_padding():
    from agentrl.batches import micro_batch

    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(200, 3000, (400,), generator=gen).tolist()
    items = list(range(400))
    batch, per_epoch = 8, 50

    def padded(batches):  # tokens a right-padded batch computes
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    for epoch in range(2):
        micro = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        grouped = [micro_batch(items, m, batch, seed=3, lengths=lengths) for m in micro]
        plain = [micro_batch(items, m, batch, seed=3) for m in micro]
        assert sorted(i for b in grouped for i in b) == items  # every item once per epoch
        assert padded(grouped) < 0.75 * padded(plain)
        assert grouped == [micro_batch(items, m, batch, seed=3, lengths=lengths) for m in micro]  # resumable
    assert micro_batch(items, 0, batch, 3, lengths) != micro_batch(items, per_epoch, batch, 3, lengths)


def test_oreo_batches_mix_outcomes_unless_length_grouping_is_asked_for():
    from agentrl.batches import grouping_lengths, micro_batch

    # agent data: successes are short, failures run to the step cap, as in bench/alfworld_mini
    success = [i % 3 == 0 for i in range(240)]
    size = [700 + i % 50 if ok else 1500 + i % 50 for i, ok in enumerate(success)]
    items = list(range(240))

    def pure_batches(lengths):
        batches = [micro_batch(items, m, 8, seed=0, lengths=lengths) for m in range(30)]
        return sum(len({success[i] for i in b}) == 1 for b in batches)

    assert grouping_lengths("oreo", None, size, items) is None  # the default: random batches
    assert pure_batches(None) <= 6
    grouped = grouping_lengths("oreo", True, size, items)
    assert grouped == size and pure_batches(grouped) >= 27  # why it is not the default
    assert grouping_lengths("sft", None, size, items) == size
    assert grouping_lengths("rs", False, size, items) is None
    assert grouping_lengths("dpo", None, size, [(0, 1), (3, 2)]) == [size[1], size[2]]


def test_paper_defaults_reward_map_and_kl(data, tiny_model_dir, tmp_path, capsys):
    """Rewards are the paper's 1 / 0 by default (the reference code's {-1, 1} map is an option); the KL is
    exact on a small vocabulary, and a top-k KL reports how much of the reference's mass its top-k holds."""
    from agentrl.data import parse_reward_map

    cfg = Config(data=[str(data)], out=str(tmp_path / "a"), model=str(tiny_model_dir), max_steps=1)
    assert parse_reward_map(cfg.reward_map) is None and cfg.afterstates
    train(cfg, save=False)
    recorded = json.loads((tmp_path / "a" / "learn_config.json").read_text())
    assert recorded["kl_topk"] == 0 and recorded["reward_map"] == "none"  # vocabulary 450 <= 4096: exact
    assert "KL: exact (vocabulary 450)" in capsys.readouterr().out
    train(Config(data=[str(data)], out=str(tmp_path / "b"), model=str(tiny_model_dir), max_steps=1, kl_topk=8),
          save=False)
    assert "top-8 holds only" in capsys.readouterr().out  # an untrained 450-token model spreads its mass
    train(Config(data=[str(data)], out=str(tmp_path / "c"), model=str(tiny_model_dir), max_steps=1, algo="sft"),
          save=False)
    assert "KL" not in capsys.readouterr().out  # SFT has no KL term to report


def test_sft_continues_an_adapter_and_the_reference_learners_refuse_one(data, tiny_model_dir, tmp_path):
    """`--model ADAPTER --lora` trains that adapter on (its own rank, not a fresh zero-B adapter); OREO from an
    adapter would take its base as the reference, so it is refused with one line."""
    from agentrl.models import ModelError

    first = tmp_path / "first"
    train(Config(data=[str(data)], model=str(tiny_model_dir), out=str(first), algo="sft", lora=True, lora_r=4,
                 lora_alpha=8, lr=3e-3, batch_size=8, max_steps=3))
    adapter = first / "policy_lora"
    start = load_file(str(adapter / "adapter_model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in start.items() if "lora_B" in k)
    second = tmp_path / "second"
    train(Config(data=[str(data)], model=str(adapter), out=str(second), algo="sft", lora=True, lr=1e-12,
                 batch_size=8, max_steps=1))
    continued = load_file(str(second / "policy_lora" / "adapter_model.safetensors"))
    assert continued.keys() == start.keys()  # rank 4 kept (lora_r's default, 64, ignored)
    assert all(torch.allclose(continued[k], start[k], atol=1e-6) for k in start)
    merged_first, merged_second = _weights(first / "policy"), _weights(second / "policy")
    assert all(torch.allclose(merged_first[k], merged_second[k], atol=1e-5) for k in merged_first)
    with pytest.raises(ModelError, match="Continue an adapter with --algo sft or rs"):
        train(Config(data=[str(data)], model=str(adapter), out=str(tmp_path / "oreo"), algo="oreo", lora=True,
                     max_steps=1))
