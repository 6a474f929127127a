"""Sharding a selection over machines (pure): `memharness run --shard K/N`.

A CI system's own parallel jobs (GitLab `parallel:`, a GitHub Actions matrix) each run one
shard; `memharness merge` puts their JSON back together.  The split is deterministic (every
job computes the same one from the same inputs) and balanced by each scenario's recorded
duration: longest first, each to the shard with the least work so far (ties: the lower
shard).  Durations come from `harness/catalogue/durations.toml` (measured on memharness's
debug builds) or from a previous `run --json` (`--durations FILE`); a scenario with no record
counts as the median of those that have one.
"""

import json
import statistics
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness.catalogue.model import Scenario
from harness.datafile import read_text
from harness.errors import UserError

DURATIONS = Path(__file__).parent / "catalogue" / "durations.toml"


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """'K/N' with 1 <= K <= N; a one-line error otherwise."""
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n) <= 1024:
        raise UserError(f"--shard {text!r}: give K/N with 1 <= K <= N <= 1024, e.g. 2/4")
    return Shard(int(k), int(n))


def key(scenario: Scenario) -> str:
    return f"{scenario.name} ({scenario.arch})"


def load_durations(path: Path | None = None) -> dict[str, float]:
    """'name (arch)' → seconds, from the built-in table or a `run --json` file."""
    path = path or DURATIONS
    text = read_text(path, "durations")
    if path.suffix == ".json":
        try:
            rows = json.loads(text)["results"]
            return {f"{r['scenario']} ({r['arch']})": float(r["seconds"]) for r in rows}
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path} is not a `memharness run --json` file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"durations {path}: {exc}") from None
    table = data.get("seconds", {})
    if set(data) - {"seconds"} or not all(isinstance(v, int | float) for v in table.values()):
        raise UserError(f"durations {path}: expected only [seconds] 'name (arch)' = number")
    return {k: float(v) for k, v in table.items()}


def weights(scenarios: list[Scenario], durations: dict[str, float]) -> list[float]:
    """Each scenario's recorded seconds; the median of the recorded ones for a scenario with
    no record (a new scenario is neither free nor the longest)."""
    known = [durations[key(s)] for s in scenarios if key(s) in durations]
    default = statistics.median(known) if known else 1.0
    return [durations.get(key(s), default) for s in scenarios]


def longest_first(scenarios: list[Scenario], durations: dict[str, float]) -> list[int]:
    """The scenarios' positions, longest recorded duration first (ties by name): the order
    that keeps N lanes of a run, or N shards, evenly loaded (longest-processing-time first,
    so a long scenario never starts last and runs alone)."""
    weight = weights(scenarios, durations)
    return sorted(range(len(scenarios)), key=lambda i: (-weight[i], key(scenarios[i])))


def assign(scenarios: list[Scenario], durations: dict[str, float], count: int) -> list[list[int]]:
    """The positions of the scenarios in each shard (catalogue order within a shard)."""
    weight = weights(scenarios, durations)
    order = longest_first(scenarios, durations)
    load = [0.0] * count
    shards: list[list[int]] = [[] for _ in range(count)]
    for i in order:
        target = min(range(count), key=lambda s: (load[s], s))
        load[target] += weight[i]
        shards[target].append(i)
    return [sorted(s) for s in shards]


def select_shard(
    scenarios: list[Scenario], shard: Shard, durations: dict[str, float]
) -> list[Scenario]:
    return [scenarios[i] for i in assign(scenarios, durations, shard.count)[shard.index - 1]]
