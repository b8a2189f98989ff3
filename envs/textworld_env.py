"""``agentrl/TextWorld-v0``: any TextWorld game (``.z8``/``.ulx``/``.tw-pddl``) as a Gymnasium environment.

TextWorld's own gym env is not a ``gymnasium.Env`` (old 4-tuple API, cumulative score). Here reward is the
per-step score change, ``terminated`` is the game's ``done`` (won or lost), truncation comes from the
``TimeLimit`` set at registration. Actions are cleaned (:func:`agentrl.envs.text.clean_action`): backslashes and
control characters would trigger frotz escapes in Z-machine games; non-ASCII characters are dropped, commands over
200 characters and interpreter meta-commands (quit, restart, save, undo, ...) are answered "Nothing happens."
without reaching the game. ``info["expert_action"]`` is the next command
of the game's winning policy (TextWorld's ``policy_commands``, which follows the player) where the game has one,
else the next walkthrough command while the player has followed the walkthrough.

``generate_games(out, n, seed)`` wraps ``tw-make custom`` (offline: Inform7 ships in the textworld wheel).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym

from agentrl.envs.text import MAX_ACTION_CHARS, choose_task, clean_action, clean_observation, text_space

GAME_SUFFIXES = (".z8", ".ulx", ".tw-pddl")
MAX_COMMAND_CHARS = 200  # the Z-machine's input buffer is smaller; jericho truncates mid-character beyond it
# Interpreter meta-commands that leave the game's MDP (quit dialogs, restarts, save files, undo).
META_COMMANDS = frozenset({"quit", "q", "restart", "restore", "save", "undo", "script", "unscript", "transcript",
                           "noscript", "load"})
INSTALL_HINT = 'TextWorld support needs the alfworld extra: pip install "agentrl[alfworld]"'


def _textworld():
    try:
        import textworld
    except ImportError as err:  # pragma: no cover
        raise ImportError(INSTALL_HINT) from err
    return textworld


def find_games(games: str | Path) -> dict[str, Path]:
    """``task_id -> game file`` for a game file or every game under a folder (ids relative to the folder)."""
    path = Path(games).expanduser()
    if path.is_file():
        if path.suffix not in GAME_SUFFIXES:
            raise ValueError(f"{path}: not a TextWorld game (expected {', '.join(GAME_SUFFIXES)})")
        return {path.name: path}
    if not path.is_dir():
        raise FileNotFoundError(f"no TextWorld game or folder at {path} (make some: agentrl gen textworld --out {path})")
    found = {str(p.relative_to(path)): p for p in sorted(path.rglob("*")) if p.suffix in GAME_SUFFIXES}
    if not found:
        raise FileNotFoundError(f"no {'/'.join(GAME_SUFFIXES)} games under {path}")
    return found


class TextWorldEnv(gym.Env):
    """One TextWorld game per episode; ``info``: task_id, task_type, task, admissible_actions, won, expert_action."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, games: str | Path, render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self._games = find_games(games)
        self.task_ids: list[str] = sorted(self._games)
        self.observation_space = text_space(100_000)
        self.action_space = text_space(MAX_ACTION_CHARS)
        self._env = None
        self._loaded: str | None = None
        self._state = None
        self._task_id = ""
        self._score = 0.0
        self._walkthrough: list[str] = []
        self._played: list[str] = []
        self._last_obs = ""

    def _load(self, task_id: str) -> None:
        textworld = _textworld()
        if self._loaded == task_id:
            return
        if self._env is not None:
            self._env.close()
        infos = textworld.EnvInfos(admissible_commands=True, won=True, lost=True, score=True, max_score=True,
                                   objective=True, policy_commands=True, extras=["walkthrough"])
        self._env = textworld.start(str(self._games[task_id]), request_infos=infos)
        self._loaded = task_id

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        task_id = choose_task(self.task_ids, options, self.np_random, f"{len(self.task_ids)} games")
        self._load(task_id)
        self._task_id = task_id
        with warnings.catch_warnings():  # jericho warns that tw-make games are not in its list of known games
            warnings.filterwarnings("ignore", message="Unable to", module="jericho")
            self._state = self._env.reset()
        self._score = float(self._state.get("score") or 0)
        self._walkthrough = list(self._state.get("extra.walkthrough") or [])
        self._played = []
        self._last_obs = clean_observation(self._state["feedback"])
        return self._last_obs, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("TextWorldEnv.step() called before reset()")
        command = clean_action(action, max_chars=MAX_COMMAND_CHARS).encode("ascii", "ignore").decode()
        if not command or command.lower() in META_COMMANDS:
            self._last_obs = "Nothing happens."  # empty/junk command: no engine call, no time passes
            return self._last_obs, 0.0, False, False, self._info()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unable to", module="jericho")
            self._state, _, done = self._env.step(command)
        self._played.append(command)
        score = float(self._state.get("score") or 0)
        reward, self._score = score - self._score, score
        self._last_obs = clean_observation(self._state["feedback"])
        return self._last_obs, reward, bool(done), False, self._info()

    def _expert_action(self) -> str | None:
        policy = self._state.get("policy_commands")
        if policy:
            return policy[0]
        n = len(self._played)
        if n < len(self._walkthrough) and self._walkthrough[:n] == self._played:
            return self._walkthrough[n]
        return None

    def _info(self) -> dict:
        return {
            "task_id": self._task_id,
            "task_type": "textworld",
            "task": self._state.get("objective") or "",
            "admissible_actions": sorted(self._state.get("admissible_commands") or []),
            "won": bool(self._state.get("won")),
            "expert_action": self._expert_action(),
        }

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._loaded = None, None


def generate_games(out: str | Path, n: int, seed: int = 0, world_size: int = 5, nb_objects: int = 10,
                   quest_length: int = 5, progress: bool = True) -> list[Path]:
    """``tw-make custom`` for seeds ``seed .. seed+n-1``: writes ``out/tw-<seed>.z8`` (+ its ``.json``)."""
    textworld = _textworld()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    from rich.progress import Progress

    with Progress(disable=not progress) as bar:
        job = bar.add_task("tw-make", total=n)
        for game_seed in range(seed, seed + n):
            options = textworld.GameOptions()
            options.seeds = game_seed
            options.path = str(out / f"tw-{game_seed:06d}.z8")
            options.file_ext = ".z8"
            options.force_recompile = True
            options.nb_rooms, options.nb_objects = world_size, nb_objects
            options.chaining.min_length = options.chaining.max_length = quest_length
            options.chaining.max_depth = quest_length
            game_file, _ = textworld.make(options)
            paths.append(Path(game_file))
            bar.update(job, advance=1)
    return paths
