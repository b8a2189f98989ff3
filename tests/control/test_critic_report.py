"""The critic report: its numbers on hand-built cases, its sampler on a scripted env, the command end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentrl.critic_report import (
    ScoredEpisode,
    Sibling,
    SiblingSet,
    build_report,
    calibration,
    pooled_auc,
    prefix_siblings,
    sibling_auc,
)
from agentrl.policies.base import Context, Decision

# ---- the metrics, by hand ----------------------------------------------------------------------------------


def test_sibling_auc_counts_only_pairs_whose_success_rates_differ() -> None:
    """Problem p, depth 1: A (V 0.9, 3/4), B (V 0.4, 1/4), C (V 0.4, 2/4). Pairs by rate: A>B (0.9 > 0.4: win),
    A>C (win), C>B (V equal: 0.5) -> 2.5 wins / 3 pairs. Problem p, depth 2: D (V 0.7, 1/2) and E (V 0.2, 2/4),
    equal rates (1*4 == 2*2): no pair. Problem q, depth 1: F (V 0.1, 1/1) and G (V 0.8, 0/1): the better F is
    valued lower -> 0 / 1. Overall 2.5 / 4 = 0.625; depth 1: 2.5 / 4 in 2 sets; depth 2: no pair (NaN)."""
    sets = [
        SiblingSet("p", 1, [Sibling("A", 0.9, 3, 4), Sibling("B", 0.4, 1, 4), Sibling("C", 0.4, 2, 4)]),
        SiblingSet("p", 2, [Sibling("D", 0.7, 1, 2), Sibling("E", 0.2, 2, 4)]),
        SiblingSet("q", 1, [Sibling("F", 0.1, 1, 1), Sibling("G", 0.8, 0, 1)]),
    ]
    report = sibling_auc(sets)
    assert report["auc"] == pytest.approx(0.625) and report["pairs"] == 4
    assert report["sets"] == 3 and report["informative_sets"] == 2
    one, two = report["by_depth"]
    assert (one["k"], one["auc"], one["pairs"], one["sets"]) == (1, pytest.approx(0.625), 4, 2)
    assert two["k"] == 2 and two["pairs"] == 0 and math.isnan(two["auc"])
    # the critic's order reversed inside every set gives the complement on the strictly ordered pairs
    flipped = [SiblingSet(s.task_id, s.depth, [Sibling(x.action, -x.value, x.successes, x.trials)
                                               for x in s.siblings]) for s in sets]  # fmt: skip
    assert sibling_auc(flipped)["auc"] == pytest.approx((0 + 0 + 0.5 + 1) / 4)


def test_pooled_auc_by_step_and_over_every_step() -> None:
    """Episodes (V after each step; outcome): a (0.8, 0.9; win), b (0.6, 0.1; loss), c (0.7; loss, problem q).
    Step 1: positives {0.8}, negatives {0.6, 0.7} -> 2/2 = 1.0 pooled; within problem p: 0.8 vs 0.6 -> 1.0 over
    1 pair. Step 2: 0.9 vs 0.1 -> 1.0. Every step: positives {0.8, 0.9}, negatives {0.6, 0.1, 0.7}: all 6 pairs
    won -> 1.0. Swap c's value to 0.85: step 1 pooled = (0.8>0.6 + 0.8<0.85) = 1/2, overall = 5/6."""
    episodes = [ScoredEpisode("p", ["x", "y"], [0.8, 0.9], True), ScoredEpisode("p", ["z", "w"], [0.6, 0.1], False),
                ScoredEpisode("q", ["x"], [0.7], False)]  # fmt: skip
    report = pooled_auc(episodes)
    assert report["overall"] == pytest.approx(1.0)
    first, second = report["by_step"]
    assert (first["k"], first["pooled"], first["within"], first["pairs"]) == (1, 1.0, 1.0, 1)
    assert (second["k"], second["pooled"]) == (2, 1.0)
    episodes[2].values = [0.85]
    report = pooled_auc(episodes)
    assert report["by_step"][0]["pooled"] == pytest.approx(0.5)
    assert report["overall"] == pytest.approx(5 / 6)


def test_calibration_bins_and_ece() -> None:
    """4 bins of width 0.25. Prefixes (V, successes/trials): (0.1, 0/2), (0.2, 1/2) -> bin 0: mean V 0.15, mean
    success 0.25, gap 0.10; (0.6, 3/4) -> bin 2: 0.6 vs 0.75, gap 0.15; (1.3, 1/1) and (0.9, 1/2) -> bin 3 (1.3
    clipped into the last bin): mean V 1.1, success 0.75, gap 0.35. Bin 1 empty.
    ECE = (2 * 0.10 + 1 * 0.15 + 2 * 0.35) / 5 = 1.05 / 5 = 0.21."""
    prefixes = [Sibling("a", 0.1, 0, 2), Sibling("b", 0.2, 1, 2), Sibling("c", 0.6, 3, 4), Sibling("d", 1.3, 1, 1),
                Sibling("e", 0.9, 1, 2)]  # fmt: skip
    report = calibration(prefixes, bins=4)
    counts = [b["count"] for b in report["bins"]]
    assert counts == [2, 0, 1, 2] and report["prefixes"] == 5
    assert [b["lo"] for b in report["bins"]] == [0.0, 0.25, 0.5, 0.75]
    zero, empty, two, three = report["bins"]
    assert (zero["mean_value"], zero["mean_success"]) == (pytest.approx(0.15), pytest.approx(0.25))
    assert math.isnan(empty["mean_value"]) and math.isnan(empty["mean_success"])
    assert (two["mean_value"], two["mean_success"]) == (pytest.approx(0.6), pytest.approx(0.75))
    assert (three["mean_value"], three["mean_success"]) == (pytest.approx(1.1), pytest.approx(0.75))
    assert report["ece"] == pytest.approx(0.21)
    assert math.isnan(calibration([], bins=4)["ece"])


def test_prefix_siblings_groups_episodes_of_a_problem_by_shared_steps() -> None:
    """Problem p: episodes [a, b] win (V 0.5, 0.9), [a, c] loss (V 0.7, 0.2), [A , d] win (V 0.3, 1.0: "A " is
    step a), [e] loss (V 0.1). Nodes: (a) 3 episodes, 2 wins, mean V (0.5 + 0.7 + 0.3) / 3 = 0.5; (e) 0/1;
    (a, b) 1/1; (a, c) 0/1; (a, d) 1/1. Sibling sets: root {a: 2/3, e: 0/1} (depth 1), after a {b, c, d}
    (depth 2). Problem q's single episode makes nodes but no set. Sibling AUC: a (2/3, V 0.5) > e (0, V 0.1)
    win; b (1, V 0.9) > c (0, V 0.2) win; d (1, V 1.0) > c win; b ~ d equal rates -> 3 / 3 = 1.0."""
    episodes = [
        ScoredEpisode("p", ["a", "b"], [0.5, 0.9], True),
        ScoredEpisode("p", ["a", "c"], [0.7, 0.2], False),
        ScoredEpisode("p", ["A ", "d"], [0.3, 1.0], True),
        ScoredEpisode("p", ["e"], [0.1], False),
        ScoredEpisode("q", ["a"], [0.4], True),
    ]
    sets, nodes = prefix_siblings(episodes)
    assert [(s.task_id, s.depth, [x.action for x in s.siblings]) for s in sets] == [
        ("p", 1, ["a", "e"]), ("p", 2, ["b", "c", "d"])]  # fmt: skip
    a = sets[0].siblings[0]
    assert (a.successes, a.trials) == (2, 3) and a.value == pytest.approx(0.5)
    assert len(nodes) == 6  # p: a, a/b, a/c, a/d, e; q: a
    report = sibling_auc(sets)
    assert report["auc"] == pytest.approx(1.0) and report["pairs"] == 3


def test_build_report_is_json_without_nan() -> None:
    """No labelled pair and no prefix: the NaN metrics are written as null."""
    report = build_report([], [ScoredEpisode("p", ["a"], [0.5], True)], [], bins=2, mode="test")
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["sibling_auc"]["auc"] is None and report["calibration"]["ece"] is None
    assert report["mode"] == "test" and report["episodes"] == 1 and report["success_rate"] == 1.0


def test_plot_draws_a_report_and_refuses_other_json(tmp_path) -> None:
    from agentrl.plots import PlotError, plot_critic_report

    sets = [SiblingSet("p", 1, [Sibling("A", 0.9, 3, 4), Sibling("B", 0.4, 1, 4)])]
    episodes = [ScoredEpisode("p", ["A"], [0.9], True), ScoredEpisode("p", ["B"], [0.4], False)]
    report = json.loads(json.dumps(build_report(sets, episodes, sets[0].siblings, bins=4)))
    assert plot_critic_report(report, tmp_path / "r.png").stat().st_size > 0
    with pytest.raises(PlotError, match="not a critic report"):
        plot_critic_report({"episodes": 3}, tmp_path / "x.png")


# ---- the sampler on a scripted env ---------------------------------------------------------------------------

# Problem: 2 + 3. At the start the policy proposes "think", "#### 5", "#### 6"; after "think", "#### 5" and
# "#### 4". Played on, it alternates "#### 5" / "#### 4" from one act call to the next row by row.
ROOT = ["think", "#### 5", "#### 6"]
AFTER_THINK = ["#### 5", "#### 4"]
VALUES = {"think": 0.6, "#### 5": 0.9, "#### 6": 0.2, "#### 4": 0.3}


class ScriptedMath:
    """A one-problem math env: an answer ends the episode, won when it is 5."""

    def __init__(self, copyable: bool = True):
        self.copyable = copyable
        self.task_ids = ["sum"]
        self.unwrapped = self

    def __deepcopy__(self, memo):
        if not self.copyable:
            raise TypeError("this env cannot be copied")
        twin = ScriptedMath(True)
        twin.steps = list(self.steps)
        return twin

    def reset(self, *, seed=None, options=None):
        self.steps = []
        return "2 + 3 = ?", {"task_id": "sum", "won": False}

    def step(self, action):
        self.steps.append(action)
        done = action.startswith("####")
        won = action == "#### 5"
        return "2 + 3 = ?\n" + "\n".join(self.steps), float(won), done, False, {"won": won}

    def close(self):
        pass


class ScriptedPolicy:
    """Proposes fixed siblings (by the number of steps taken) and alternates answers when played on."""

    name = "scripted"

    def __init__(self):
        self.ended: list[str] = []

    def begin(self, slot, observation, info, env_kind):
        return Context(slot=slot, messages=[{"role": "user", "content": observation}], observation=observation,
                       info=info, env_kind=env_kind, memory={"cache_key": "start"})  # fmt: skip

    def propose(self, contexts, k):
        steps = [sum(m["role"] == "assistant" for m in c.messages) for c in contexts]
        return [[Decision(a, a) for a in (ROOT if n == 0 else AFTER_THINK)][:k] for n in steps]

    def act(self, contexts):
        return [Decision(AFTER_THINK[i % 2], AFTER_THINK[i % 2]) for i in range(len(contexts))]

    def observe(self, context, decision, observation, info):
        context.messages += [{"role": "assistant", "content": decision.raw}, {"role": "user", "content": observation}]

    def end(self, context):
        self.ended.append(context.memory["cache_key"])


class TableScorer:
    """A stand-in critic: V after a step is VALUES[step]."""

    def __init__(self):
        self.released: list[str] = []

    def score(self, contexts, candidates):
        return [[VALUES[d.action] for d in group] for group in candidates]

    def release(self, key):
        self.released.append(key)


@pytest.mark.parametrize("copyable", [True, False])
def test_prober_labels_siblings_by_their_continuations(copyable: bool) -> None:
    """Depth 1: siblings think (V 0.6), #### 5 (0.9), #### 6 (0.2); 4 continuations each. think's continuations
    answer 5, 4, 5, 4 (one act call, rows alternate) -> 2/4; #### 5 is an answer: 4/4; #### 6: 0/4. Labelled
    pairs: (#### 5 > think: 0.9 > 0.6 win), (#### 5 > #### 6 win), (think > #### 6: 0.6 > 0.2 win). The walk
    follows the first sibling, think, to depth 2: #### 5 (0.9, 4/4) > #### 4 (0.3, 0/4): win. 4 / 4 pairs.
    Episodes: 3 * 4 at depth 1 + 2 * 4 at depth 2 = 20; think's continuations carry V (0.6, 0.9 or 0.3)."""
    from agentrl.critic_probe import Prober

    policy, scorer = ScriptedPolicy(), TableScorer()
    prober = Prober(policy, scorer, lambda: ScriptedMath(copyable), siblings=3, continuations=4, max_steps=5)
    sets, episodes = prober.probe(ScriptedMath(copyable), 0, "sum")
    labels = [[(s.action, s.value, s.successes, s.trials) for s in group.siblings] for group in sets]
    assert labels == [[("think", 0.6, 2, 4), ("#### 5", 0.9, 4, 4), ("#### 6", 0.2, 0, 4)],
                      [("#### 5", 0.9, 4, 4), ("#### 4", 0.3, 0, 4)]]  # fmt: skip
    assert [s.depth for s in sets] == [1, 2]
    report = sibling_auc(sets)
    assert report["auc"] == 1.0 and report["pairs"] == 4
    assert len(episodes) == 20 and sum(e.success for e in episodes) == 2 + 4 + 4
    think = [e for e in episodes if e.actions[0] == "think" and e.meta["branch_depth"] == 1]
    assert [(e.values, e.success) for e in think] == [([0.6, 0.9], True), ([0.6, 0.3], False)] * 2
    deeper = [e for e in episodes if e.meta["branch_depth"] == 2]
    assert all(e.actions[0] == "think" and e.values[0] == 0.6 for e in deeper)
    # every branch's cached chat is dropped by the generator and the critic once it is done with
    assert "sum/walk" in policy.ended and "sum/d2/s0" in policy.ended and sorted(policy.ended) == sorted(scorer.released)
    assert len(set(policy.ended)) == len(policy.ended) == 1 + 3 + 12 + 2 + 8


def test_prober_depth_cap() -> None:
    """--depth 1: only the first step's siblings are probed."""
    from agentrl.critic_probe import Prober

    prober = Prober(ScriptedPolicy(), TableScorer(), ScriptedMath, siblings=2, continuations=2, max_steps=5, depth=1)
    sets, episodes = prober.probe(ScriptedMath(), 0, "sum")
    assert [s.depth for s in sets] == [1] and [x.action for x in sets[0].siblings] == ["think", "#### 5"]
    assert len(episodes) == 4


# ---- the command, end to end on a tiny model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def critic_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A critic on the tiny model with a random head, recorded as trained at afterstates (as the learner does)."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentrl.critic import ValueModel

    torch.manual_seed(0)
    critic = ValueModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), hidden_size=64)
    torch.nn.init.normal_(critic.value_head.weight)
    critic.trained_at = {"level": "step", "afterstates": True}
    folder = tmp_path_factory.mktemp("critic") / "critic"
    critic.save_pretrained(folder)
    return folder


def _args(tiny_model_dir, critic_dir, out: Path, *extra: str) -> list[str]:
    return ["critic-report", "--env", "math", "--dataset", "gsm8k-test-100", "--split", "test", "--model",
            str(tiny_model_dir), "--critic", str(critic_dir), "--no-example", "--max-new-tokens", "4",
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def test_command_samples_siblings_and_writes_report_and_plot(tiny_model_dir, critic_dir, tmp_path) -> None:
    """1 problem, 2 siblings x 2 continuations, depth 1, at most 2 steps: a JSON report, tables and a PNG."""
    import torch

    from agentrl.cli import main

    torch.set_num_threads(1)
    out, plot = tmp_path / "report.json", tmp_path / "report.png"
    args = _args(tiny_model_dir, critic_dir, out, "--tasks", "1", "--siblings", "2", "--continuations", "2",
                 "--depth", "1", "--max-steps", "2", "--plot", str(plot))  # fmt: skip
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "sampling" and report["problems"] == 1
    assert report["sibling_auc"]["sets"] == 1 and report["sibling_auc"]["by_depth"][0]["k"] == 1
    siblings = report["calibration"]["prefixes"]
    assert 1 <= siblings <= 2 and report["episodes"] == 2 * siblings  # distinct siblings x continuations
    assert 1 <= len(report["pooled_auc"]["by_step"]) <= 2 and report["config"]["continuations"] == 2
    assert sum(b["count"] for b in report["calibration"]["bins"]) == siblings
    assert plot.stat().st_size > 0


def test_command_reads_trajectories_with_the_scorers_values(tiny_model_dir, critic_dir, tmp_path) -> None:
    """Trajectory mode: V after each step equals what CriticScorer (best-of-K, beam search) reads there."""
    import torch

    from agentrl.critic_probe import CriticReportConfig, file_report
    from agentrl.models import load_tokenizer
    from agentrl.policies.scoring import CriticScorer
    from agentrl.trajectory import TrajectoryWriter
    from agentrl.types import Episode, Step

    torch.set_num_threads(1)
    question = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?"
    turns = [(["3 + 5 = 8", "#### 8"], True), (["3 + 5 = 9", "#### 9"], False), (["#### 8"], True)]
    path = tmp_path / "math.jsonl"
    with TrajectoryWriter(path) as writer:
        for n, (steps, ok) in enumerate(turns):
            messages = [{"role": "user", "content": question}]
            for i, step in enumerate(steps):
                messages.append({"role": "assistant", "content": step})
                if i < len(steps) - 1:
                    messages.append({"role": "user", "content": "Next step."})
            writer.write(Episode(episode_id=f"m/test/t0/s{n}", task_id="t0", env_id="agentrl/Math-v0", split="test",
                                 task_type="math", policy="react", success=ok, reward=float(ok),
                                 steps=[Step(observation="", action=s) for s in steps], messages=messages))  # fmt: skip
    cfg = CriticReportConfig(model=str(tiny_model_dir), critic=str(critic_dir), trajectories=str(path),
                             out=str(tmp_path / "r.json"))  # fmt: skip
    sets, episodes, prefixes = file_report(cfg)
    scorer = CriticScorer.from_pretrained(str(critic_dir), load_tokenizer(str(tiny_model_dir)))
    for (steps, _ok), scored in zip(turns, episodes, strict=True):
        messages = [{"role": "user", "content": question}]
        for i, step in enumerate(steps):
            ctx = Context(slot=0, messages=list(messages), observation="", info={}, env_kind="math")
            assert scored.values[i] == pytest.approx(scorer.score([ctx], [[Decision(step, step)]])[0][0], abs=1e-5)
            messages += [{"role": "assistant", "content": step}, {"role": "user", "content": "Next step."}]
    # root siblings: "3 + 5 = 8" (1/1), "3 + 5 = 9" (0/1), "#### 8" (1/1)
    assert [(s.depth, [(x.action, x.successes, x.trials) for x in s.siblings]) for s in sets] == [
        (1, [("3 + 5 = 8", 1, 1), ("3 + 5 = 9", 0, 1), ("#### 8", 1, 1)])]  # fmt: skip
    assert len(prefixes) == 5


@pytest.mark.parametrize("extra, message", [
    (["--trajectories", "missing.jsonl"], "--trajectories: no such file: missing.jsonl"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--siblings", "0"], "`siblings` must be >= 1"),
    (["--policy", "expert"], "use --policy react"),
])  # fmt: skip
def test_bad_input_is_one_line_exit_2(tiny_model_dir, critic_dir, tmp_path, capsys, extra, message) -> None:
    from agentrl.cli import main

    assert main(_args(tiny_model_dir, critic_dir, tmp_path / "r.json", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("agentrl critic-report: error:")


def test_a_damaged_trajectory_file_is_one_line_exit_2(tiny_model_dir, critic_dir, tmp_path, capsys) -> None:
    from agentrl.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema": 1}\n')
    assert main(_args(tiny_model_dir, critic_dir, tmp_path / "r.json", "--trajectories", str(bad))) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}:1" in err and len(err.splitlines()) == 1
