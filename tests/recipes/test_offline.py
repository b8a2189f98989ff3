"""The offline-RL recipe end to end on micro configs: every stage, the summary, a rerun that skips everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrl.cli import main

ROOT = Path(__file__).resolve().parents[2]
MICRO_MODEL = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--learn.batch_size", "4",
               "--sft.epochs", "1"]  # fmt: skip
PROBLEMS = [
    {"question": "Tom has 3 apples and buys 5 more. How many apples does he have?",
     "answer": "Tom starts with 3 apples.\nHe buys 5 more, so 3 + 5 = 8.\n#### 8"},
    {"question": "Ann has 4 pens and loses 1. How many pens are left?",
     "answer": "Ann starts with 4 pens.\nShe loses 1, so 4 - 1 = 3.\n#### 3"},
]


@pytest.mark.alfworld
def test_alfworld_mini_micro_protocol(tmp_path: Path, capsys) -> None:
    """bench/alfworld_mini's config, shrunk: generation, demonstrations, SFT, rollouts, RS/DPO/OREO, best-of-K."""
    pytest.importorskip("alfworld")
    from bench_runner import run_bench

    out = tmp_path / "mini"
    argv = ["--out", str(out), "--seeds", "0", "--tasks.train", "6", "--tasks.eval", "1", "--tasks.workers", "1",
            "--eval-on", "valid_unseen", "--vocab-size", "400", "--max-steps", "3", "--max-new-tokens", "12",
            "--num-envs", "2", "--rollouts.samples_per_task", "2", "--learners.DPO.lr", "1e-5",
            "--evaluations.OREO+best-of-{k}.best_of", "[2]", "--thoughts", "off", "--tokenizer", "word",
            "--learners.OREAL", "{algo: oreal, lr: 0.0002, oreal_rm_warmup: 1}", "--evaluations.OREAL", "{policy: OREAL}",
            "--compare", "OREO vs SFT,OREO+best-of-2 vs OREO", *MICRO_MODEL]  # fmt: skip
    assert run_bench("alfworld_mini", argv) == 0
    seed = out / "seed0"
    assert len((seed / "rollouts.jsonl").read_text().splitlines()) == 12  # 6 tasks x 2 rollouts
    methods = ["SFT", "RS", "DPO", "OREO", "OREO+best-of-2", "OREAL"]
    for method in methods:
        result = json.loads((seed / "results" / "valid_unseen" / f"{method}.json").read_text())
        assert result["episodes"] == 1 and result["method"] == method
    for stage, lr in (("sft", 2e-3), ("OREO", 2e-4), ("RS", 2e-4), ("DPO", 1e-5), ("OREAL", 2e-4)):
        learn_config = json.loads((seed / stage / "learn_config.json").read_text())
        assert learn_config["max_length"] == 4096 and learn_config["save_every"] == 100 and learn_config["lr"] == lr
    oreal = json.loads((seed / "OREAL" / "learn_config.json").read_text())
    assert oreal["data"] == [str(out / "demonstrations.jsonl"), str(seed / "rollouts.jsonl")]
    assert oreal["oreal_rm_warmup"] == 1
    # thought-free word-level run: the demonstrations' format travels to every model and evaluation
    from agentrl.agent_format import load
    from agentrl.trajectory import read_episodes

    assert all(load(seed / folder).thoughts is False for folder in ("base-model", "sft/policy", "OREO/policy"))
    evaluated = read_episodes(seed / "results" / "valid_unseen" / "OREO.jsonl")[0]
    assert evaluated.meta["agent"]["thoughts"] is False and "Think" not in evaluated.messages[0]["content"]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["results"]["valid_unseen"]) == methods
    assert all(0.0 <= row["nothing_happens"] <= 1.0 for row in summary["results"]["valid_unseen"].values())
    assert "| OREO+best-of-2 |" in (out / "summary.md").read_text() and (out / "summary.png").stat().st_size
    assert {"generate train tasks", "expert demonstrations"} <= set(summary["stage_seconds"])
    pairs = summary["paired"]["valid_unseen"]  # the config's `compare`, paired over the one (seed, task)
    assert [(p["a"], p["b"], p["units"]) for p in pairs] == [("OREO", "SFT", 1), ("OREO+best-of-2", "OREO", 1)]
    assert "seed 0: OREO" in summary["stage_seconds"]
    capsys.readouterr()
    assert run_bench("alfworld_mini", argv) == 0  # a rerun skips every stage
    assert "took" not in capsys.readouterr().out


def test_only_some_stages_leaves_the_others_unbuilt(tmp_path: Path) -> None:
    """`--only` up to SFT greedy: the beam evaluation's config, whose OREO critic does not exist yet, is never
    built (it used to stop the run with `--critic: no such folder`), and no later stage runs."""
    from bench_runner import run_bench

    out = tmp_path / "mm"
    argv = ["--out", str(out), "--problems", "6", "--demonstrations.episodes", "6", "--eval-episodes", "2",
            "--vocab-size", "300", "--max-steps", "2", "--max-new-tokens", "6", "--num-envs", "1",
            "--only", "expert*,*: tiny model,*: SFT,*: evaluate SFT greedy *", *MICRO_MODEL]  # fmt: skip
    assert run_bench("math_mini", argv) == 0
    assert sorted(p.name for p in (out / "seed0" / "results" / "gsm-symbolic").iterdir()) == [
        "SFT_greedy.json", "SFT_greedy.jsonl"]
    assert not (out / "seed0" / "rollouts.jsonl").exists() and not (out / "seed0" / "OREO").exists()


def test_math_micro_protocol_with_beams_then_rerun(tmp_path: Path, capsys) -> None:
    """bench/math_mini's config, shrunk: demonstrations -> tiny model -> SFT -> rollouts -> OREO -> beams."""
    from bench_runner import run_bench

    out = tmp_path / "mm"
    argv = ["--out", str(out), "--problems", "6", "--demonstrations.episodes", "6", "--rollouts.episodes", "4",
            "--eval-episodes", "2", "--vocab-size", "300", "--max-steps", "2", "--max-new-tokens", "6",
            "--num-envs", "1", "--evaluations.OREO beam B={b}.beam", "[1, 2]",
            "--evaluations.OREO beam B={b}.beam_prior", "0.05",
            "--learners.DQO", "{algo: dqo, train_on: [rollouts], lr: 0.00002}", "--evaluations.DQO greedy",
            "{policy: DQO}", *MICRO_MODEL]  # fmt: skip
    assert run_bench("math_mini", argv) == 0
    assert len((out / "demonstrations.jsonl").read_text().splitlines()) == 6
    assert len((out / "seed0" / "rollouts.jsonl").read_text().splitlines()) == 4
    assert (out / "seed0" / "OREO" / "critic").is_dir()
    learn_config = json.loads((out / "seed0" / "OREO" / "learn_config.json").read_text())
    assert learn_config["level"] == "step" and learn_config["save_every"] == 100
    summary = json.loads((out / "summary.json").read_text())
    methods = ["SFT greedy", "OREO greedy", "OREO beam B=1", "OREO beam B=2", "DQO greedy"]
    dqo = json.loads((out / "seed0" / "DQO" / "learn_config.json").read_text())
    assert (dqo["algo"], dqo["level"], dqo["data"]) == ("dqo", "token", [str(out / "seed0" / "rollouts.jsonl")])
    for dataset in ("gsm-symbolic", "gsm8k-test-100"):
        assert list(summary["results"][dataset]) == methods
        assert all(row["episodes"] == 2 and row["nothing_happens"] is None for row in summary["results"][dataset].values())
    beam = json.loads((out / "seed0" / "results" / "gsm8k-test-100" / "OREO_beam_B2.json").read_text())
    assert beam["config"]["beam"] == 2 and beam["config"]["split"] == "test" and beam["config"]["beam_prior"] == 0.05
    table = (out / "summary.md").read_text()
    assert table.count("\n") == 2 + len(methods) and "| OREO beam B=2 | " in table and "/2 = " in table
    capsys.readouterr()
    assert run_bench("math_mini", argv) == 0
    assert "took" not in capsys.readouterr().out


def test_iterate_two_rounds_then_rerun_skips(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    out = tmp_path / "iter"
    argv = ["iterate", "--out", str(out), "--rounds", "2", "--model", str(tiny_model_dir), "--env", "math",
            "--dataset", f"jsonl:{data}", "--split", "test", "--samples-per-task", "2", "--max-steps", "3",
            "--num-envs", "1", "--lr", "1e-3", "--batch-size", "2"]  # fmt: skip
    assert main(argv) == 0
    seed = out / "seed0"
    for r in (1, 2):
        folder = seed / f"round-{r}"
        assert len((folder / "rollouts.jsonl").read_text().splitlines()) == 4  # 2 problems x 2 samples
        assert (folder / "OREO" / "critic").is_dir() and (folder / "OREO" / "policy" / "config.json").is_file()
        results = json.loads((seed / "results" / f"jsonl:{data}" / f"OREO_round_{r}.json").read_text())
        assert results["episodes"] == 2 and 0.0 <= results["success_rate"] <= 1.0
    round2 = json.loads((seed / "round-2" / "OREO" / "learn_config.json").read_text())
    assert round2["model"] == str(seed / "round-1" / "OREO" / "policy")  # round 2 starts from round 1's policy
    assert round2["data"] == [str(seed / "round-1" / "rollouts.jsonl"), str(seed / "round-2" / "rollouts.jsonl")]
    capsys.readouterr()
    assert main(argv) == 0  # everything done: every stage is skipped
    assert capsys.readouterr().out.count("done already") == 6


def test_iterate_oreal_carries_the_reward_model_across_rounds(tmp_path: Path, tiny_model_dir: Path) -> None:
    """OREAL rounds learn on their own rollouts (plus the demonstrations, which make the groups mixed: the tiny
    model rarely solves a problem); round 2 starts from round 1's token reward model, without warm-up."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    demos = tmp_path / "demos.jsonl"
    env = ["--env", "math", "--dataset", f"jsonl:{data}", "--max-steps", "3", "--num-envs", "1"]
    assert main(["rollout", *env, "--split", "test", "--policy", "expert", "--out", str(demos)]) == 0
    out = tmp_path / "iter"
    argv = ["iterate", "--algo", "oreal", "--out", str(out), "--rounds", "2", "--model", str(tiny_model_dir), *env,
            "--split", "test", "--samples-per-task", "2", "--lr", "1e-3", "--batch-size", "2", "--extra-data",
            str(demos), "--oreal-rm-warmup", "1"]  # fmt: skip
    assert main(argv) == 0
    seed = out / "seed0"
    first, second = (json.loads((seed / f"round-{r}" / "OREAL" / "learn_config.json").read_text()) for r in (1, 2))
    assert first["data"] == [str(demos), str(seed / "round-1" / "rollouts.jsonl")]
    assert second["data"] == [str(demos), str(seed / "round-2" / "rollouts.jsonl")]  # round 2's samples only
    assert (first["oreal_rm_warmup"], first["critic_init"]) == (1, None)
    assert (second["oreal_rm_warmup"], second["critic_init"]) == (0, str(seed / "round-1" / "OREAL" / "critic"))
    metrics = [json.loads(x) for x in (seed / "round-2" / "OREAL" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["policy_loss"] is not None  # no warm-up in round 2
    assert abs(metrics[0]["rm_loss"] - 0.693147) > 1e-4  # a fresh zero head would give ln 2 exactly
    result = json.loads((seed / "results" / f"jsonl:{data}" / "OREAL_round_2.json").read_text())
    assert result["method"] == "OREAL round 2"


def test_iterate_dagger_rounds_label_the_policys_states_and_train_sft_on_all_labels(tmp_path: Path,
                                                                                     tiny_model_dir: Path,
                                                                                     capsys) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    out = tmp_path / "dagger"
    argv = ["iterate", "--policy", "dagger", "--beta-schedule", "linear:4", "--out", str(out), "--rounds", "2",
            "--model", str(tiny_model_dir), "--env", "math", "--dataset", f"jsonl:{data}", "--split", "test",
            "--samples-per-task", "1", "--max-steps", "3", "--num-envs", "1", "--temperature", "0", "--lr", "1e-3",
            "--batch-size", "2"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "data: {'read': 2," in printed and "data: {'read': 4," in printed  # round 2: both rounds' labels
    seed = out / "seed0"
    for r, beta in ((1, 0.75), (2, 0.5)):  # linear:4 -> 1 - r/4
        folder = seed / f"round-{r}"
        rows = [json.loads(x) for x in (folder / "rollouts.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(row["policy"] == "dagger" for row in rows)
        assert all(row["meta"]["dagger"]["beta"] == beta for row in rows)
        for row in rows:  # math's expert labels while the episode follows the reference; the chat ends there
            labels = [step["label"] for step in row["steps"]]
            labelled = labels.index(None) if None in labels else len(labels)
            turns = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
            assert labelled >= 1 and turns == labels[:labelled]
        assert (folder / "DAgger" / "policy" / "config.json").is_file() and not (folder / "DAgger" / "critic").exists()
        result = json.loads((seed / "results" / f"jsonl:{data}" / f"DAgger_round_{r}.json").read_text())
        assert result["method"] == f"DAgger round {r}"
    log = (seed / "round-2" / "DAgger" / "metrics.jsonl").read_text().splitlines()
    assert log and "loss" in json.loads(log[0])


@pytest.mark.parametrize("path", sorted(ROOT.glob("bench/*/*.yaml")) + [ROOT / "configs" / "demo.yaml"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_recipe_loads(path: Path) -> None:
    from agentrl.config import parse_config
    from agentrl.recipes import RecipeConfig

    cfg = parse_config(RecipeConfig, ["--config", str(path)], prog="agentrl recipe")
    assert cfg.evaluations and cfg.eval_on


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("learners: {OREO: {algo: oreo, lrr: 0.1}}\nevaluations: {OREO: {policy: OREO}}\n",
     "learners.OREO: unknown learn option `lrr`; did you mean `lr`?"),
    ("learners: {OREO: {algo: oreo, train_on: [expert]}}\nevaluations: {OREO: {policy: OREO}}\n",
     "train_on: unknown ['expert']"),
    ("learners: {OREO: {algo: oreo}}\nevaluations: {X: {policy: OREO, critic: OREO, best_of: [3, 5]}}\n",
     "several widths need `{k}`"),
    ("learners: {OREO: {algo: oreo}}\nevaluations: {X: {policy: OREO, critic: OREO, best_of_n: [3, 5]}}\n",
     "several widths need `{n}`"),
    ("learners: {OREO: {algo: oreo}}\nevaluations: {X: {policy: OREO, critic: OREO, beam: [3], best_of_n: [5]}}\n",
     "not beam and best_of_n"),
    ("learners: {OREO: {algo: oreo}}\nevaluations: {X: {policy: OREO, best_of_n: [5]}}\n", "need a `critic`"),
    ("learners: {OREO: {algo: oreo}}\nevaluations: {X: {policy: OREO, beam_prior: 0.1}}\n", "needs `beam` widths"),
    ("evaluations: {X: {policy: DQO}}\n", "evaluations.X.policy: 'DQO' is not one of"),
    ("sft: {epochs: -1}\nevaluations: {SFT: {policy: sft}}\n", "epochs"),
    ("evaluations: {X: {polcy: sft}}\n", "did you mean `policy`"),
    ("rounds: 2\nevaluations: {SFT: {policy: sft}}\n", "rounds > 1 need `next_policy`"),
])
def test_recipe_config_errors_name_the_key(tmp_path: Path, yaml_text: str, message: str, capsys) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("env: math\ndataset: chain-sum\n" + yaml_text)
    assert main(["recipe", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_generated_tasks_reach_every_split_with_their_seeds(tmp_path: Path, monkeypatch) -> None:
    """small.yaml's room size and task types reach train and both evaluation splits (seeds: seed, +2, +1)."""
    from agentrl.config import parse_config
    from agentrl.recipes import RecipeConfig, offline
    from agentrl.recipes.stages import Stages

    calls = []

    def gen_tasks(root, split, n, seed, **kwargs):
        calls.append((split, n, seed, kwargs["room_size"], kwargs["task_types"]))
        (Path(root) / "json_2.1.1" / split).mkdir(parents=True)

    monkeypatch.setattr(offline, "gen_tasks", gen_tasks)
    config = ROOT / "bench" / "alfworld_mini" / "small.yaml"
    cfg = parse_config(RecipeConfig, ["--config", str(config), "--out", str(tmp_path / "small"), "--seed", "5"],
                       prog="agentrl recipe")
    assert offline._prepare_data(cfg, Stages(tmp_path)) == str(tmp_path / "small" / "data")
    types = ["pick_and_place_simple", "look_at_obj_in_light"]
    assert calls == [("train", 400, 5, "small", types), ("valid_unseen", 100, 7, "small", types),
                     ("valid_seen", 100, 6, "small", types)]
