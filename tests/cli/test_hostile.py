"""Hostile invocations, as a new user would try them: each is one clean line naming the input, exit code 2.

Every row runs ``agentrl`` in this process (an exception that is not an ``AgentRLError`` fails the test with its
traceback); the worker-process path also runs as a real subprocess, where any traceback a worker printed would
show in the captured output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentrl.cli import main
from agentrl.types import Episode, Step

BAD_JSONL = '{"question": "1 + 1?", "answer": "#### 2"}\n{"question": oops\n'


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs of the table: corrupt files, a folder, an empty alfworld root, a good and a damaged trajectory."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "BAD.jsonl").write_text(BAD_JSONL)
    (root / "bad.yaml").write_text("env: math\n  policy: [expert\n")
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01")
    (root / "folder").mkdir()
    (root / "critic").mkdir()
    episode = Episode(episode_id="math/test/p/s0", task_id="p", env_id="agentrl/Math-v0", split="test",
                      task_type="math", policy="react", success=False, reward=0.0,
                      steps=[Step(observation="1 + 1?", action="#### 3")], messages=[])
    good = json.dumps(episode.to_dict())
    (root / "torn.jsonl").write_text(good + "\n" + "{not json\n" + good + "\n")
    return {path.name: path for path in root.iterdir()}


def _cases() -> list[tuple[str, list[str], str]]:
    """(case, argv with {name} placeholders for ``files``, text the error line must contain)."""
    return [
        ("unknown dataset", ["rollout", "--env", "math", "--dataset", "nope", "--policy", "expert", "--out",
                             "{folder}/x.jsonl"], "'nope'"),
        ("corrupt dataset JSONL, beam search", ["eval", "--env", "math", "--dataset", "jsonl:{BAD.jsonl}",
                                                "--split", "test", "--beam", "2", "--critic", "{critic}",
                                                "--out", "{folder}/r.json"], "BAD.jsonl:2"),
        ("corrupt YAML", ["eval", "--config", "{bad.yaml}"], "bad.yaml:2"),
        ("binary YAML", ["rollout", "--config", "{binary.yaml}"], "binary.yaml"),
        ("unknown YAML key", ["eval", "--config", "{BAD.jsonl}"], "BAD.jsonl"),
        ("missing model", ["eval", "--env", "math", "--policy", "react", "--model", "{folder}/nope", "--out",
                           "{folder}/r.json", "--episodes", "1", "--no-progress"], "nope"),
        ("missing critic", ["eval", "--env", "math", "--best-of", "3", "--critic", "{folder}/none", "--out",
                            "{folder}/r.json"], "--critic"),
        ("bad split of a one-split dataset", ["eval", "--env", "math", "--dataset", "gsm8k-test-100", "--split",
                                              "train", "--policy", "expert", "--out", "{folder}/r.json"], "'train'"),
        ("bad alfworld split", ["rollout", "--env", "alfworld", "--data", "{folder}", "--split", "valid",
                                "--policy", "expert", "--out", "{folder}/x.jsonl"], "'valid'"),
        ("negative episodes", ["rollout", "--env", "math", "--policy", "expert", "--episodes", "-1", "--out",
                               "{folder}/x.jsonl"], "episodes"),
        ("negative envs", ["eval", "--env", "math", "--policy", "expert", "--num-envs", "-2", "--out",
                           "{folder}/r.json"], "num_envs"),
        ("zero step cap", ["eval", "--env", "math", "--policy", "expert", "--max-steps", "0", "--out",
                           "{folder}/r.json"], "max_steps"),
        ("negative problems", ["rollout", "--env", "math", "--dataset", "chain-sum", "--problems", "-5",
                               "--policy", "expert", "--out", "{folder}/x.jsonl"], "problems"),
        ("not a number", ["rollout", "--env", "math", "--policy", "expert", "--episodes", "many", "--out",
                          "{folder}/x.jsonl"], "episodes"),
        ("folder as output file", ["rollout", "--env", "math", "--policy", "expert", "--out", "{folder}"],
         "folder"),
        ("folder as dataset file", ["rollout", "--env", "math", "--dataset", "jsonl:{folder}", "--policy",
                                    "expert", "--out", "{folder}/x.jsonl"], "folder"),
        ("folder as config file", ["eval", "--config", "{folder}"], "folder"),
        ("folder as trajectory file", ["replay", "{folder}"], "folder"),
        ("folder as training data", ["learn", "--data", "{folder}", "--out", "{folder}/run"], "folder"),
        ("damaged trajectory line", ["replay", "{torn.jsonl}", "--no-delay"], "torn.jsonl:2"),
        ("unknown flag", ["rollout", "--evn", "math"], "`evn`"),
        ("pack without an adapter", ["model", "pack", "--out", "{folder}/agent"], "--adapter"),
        ("pack of a folder that is no adapter", ["model", "pack", "--adapter", "{folder}", "--out",
                                                 "{folder}/agent"], "not a LoRA adapter folder"),
    ]


@pytest.mark.parametrize(("case", "argv", "expected"), _cases(), ids=[c[0] for c in _cases()])
def test_hostile_invocation_is_one_clean_line(case: str, argv: list[str], expected: str, files: dict[str, Path],
                                              capfd: pytest.CaptureFixture[str]) -> None:
    args = list(argv)
    for name, path in files.items():
        args = [a.replace("{" + name + "}", str(path)) for a in args]
    assert main(args) == 2, case
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"agentrl {args[0]}: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in out + err


def test_env_errors_inside_worker_processes_reach_the_user_as_one_line(files: dict[str, Path]) -> None:
    """The issue's invocation: a corrupt JSONL dataset, loaded by the env inside its worker process."""
    argv = ["rollout", "--env", "math", "--dataset", f"jsonl:{files['BAD.jsonl']}", "--split", "test",
            "--policy", "expert", "--num-envs", "2", "--out", str(files["folder"] / "w.jsonl")]
    done = subprocess.run([sys.executable, "-c", "from agentrl.cli import main; raise SystemExit(main())", *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "BAD.jsonl:2: invalid JSON" in line and "math (dataset jsonl:" in line, line


def test_a_dataset_with_one_split_defaults_to_it(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`agentrl eval --env math --dataset gsm8k-test-100` (no --split) evaluates its only split, test."""
    out = tmp_path / "r.json"
    argv = ["eval", "--env", "math", "--dataset", "gsm8k-test-100", "--policy", "expert", "--episodes", "2",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["config"]["split"] == "test" and results["episodes"] == 2 and results["success_rate"] == 1.0
    assert "Traceback" not in "".join(capfd.readouterr())


def test_control_characters_and_a_10kb_action_replay_safely(tmp_path: Path,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """A trajectory holds model text as it was generated: valid data, drawn without driving the terminal."""
    action = "go\x00\x1b[2J\x07" + "A" * 10_000
    episode = Episode(episode_id="math/test/p/s0", task_id="p", env_id="agentrl/Math-v0", split="test",
                      task_type="math", policy="react", success=False, reward=0.0,
                      steps=[Step(observation="question\x1b]0;owned\x07", action=action, thought="\x1b[31mhm")],
                      messages=[])
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(episode.to_dict()) + "\n")
    assert main(["replay", str(path), "--no-delay"]) == 0
    out, err = capfd.readouterr()
    assert not any(c in out + err for c in "\x00\x1b\x07") and "Traceback" not in out + err
    assert "go␀␛[2J␇" in out and "(+8,008 chars)" in out  # drawn as symbols, clipped at 2,000 characters
