"""Sharding (harness/shard.py) and merging (harness/report/merge.py), on the real catalogue and
its recorded durations, and on shard JSON shaped as `run --json` writes it."""

import copy
import statistics
from typing import Any

import pytest

from harness.catalogue.model import CATALOGUE, load_catalogue
from harness.errors import UserError
from harness.report.merge import merge
from harness.shard import (
    Shard,
    assign,
    key,
    load_durations,
    longest_first,
    parse_shard,
    select_shard,
    weights,
)

pytestmark = pytest.mark.unit
SCENARIOS = load_catalogue(CATALOGUE)
DURATIONS = load_durations()


def test_every_scenario_of_the_catalogue_has_a_recorded_duration() -> None:
    assert {key(s) for s in SCENARIOS} == set(DURATIONS)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 40])
def test_shards_cover_the_selection_once_in_catalogue_order(count: int) -> None:
    shards = [select_shard(SCENARIOS, Shard(k, count), DURATIONS) for k in range(1, count + 1)]
    flat = [key(s) for shard in shards for s in shard]
    assert sorted(flat) == sorted(key(s) for s in SCENARIOS)
    for shard in shards:
        positions = [SCENARIOS.index(s) for s in shard]
        assert positions == sorted(positions)


def test_shards_are_balanced_and_deterministic() -> None:
    first = assign(SCENARIOS, DURATIONS, 2)
    assert first == assign(list(SCENARIOS), dict(DURATIONS), 2)
    loads = [sum(DURATIONS[key(SCENARIOS[i])] for i in shard) for shard in first]
    longest = max(DURATIONS.values())
    # greedy longest-first: the shards differ by at most the longest scenario
    assert abs(loads[0] - loads[1]) <= longest


def test_lanes_start_longest_first_and_a_new_scenario_as_the_median() -> None:
    order = longest_first(SCENARIOS, DURATIONS)
    assert sorted(order) == list(range(len(SCENARIOS)))
    seconds = [DURATIONS[key(SCENARIOS[i])] for i in order]
    assert seconds == sorted(seconds, reverse=True)
    assert seconds[0] == max(DURATIONS.values())
    unrecorded = dict(DURATIONS)
    del unrecorded[key(SCENARIOS[0])]
    median = statistics.median(unrecorded.values())
    assert weights(SCENARIOS, unrecorded)[0] == median
    order = longest_first(SCENARIOS, unrecorded)
    place = order.index(0)
    assert all(unrecorded[key(SCENARIOS[i])] >= median for i in order[:place])
    assert all(unrecorded[key(SCENARIOS[i])] <= median for i in order[place + 1 :])


def test_unrecorded_scenarios_count_as_the_median() -> None:
    shards = assign(SCENARIOS, {}, 3)
    assert sorted(len(s) for s in shards) == sorted(
        [len(SCENARIOS) // 3 + (i < len(SCENARIOS) % 3) for i in range(3)]
    )


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "1/2/3", "-1/2", "1/2000"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(UserError, match="K/N"):
        parse_shard(text)


def row(name: str, verdict: str, new: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "scenario": name,
        "arch": "x86_64",
        "outcome": "pass" if verdict == "passed" else "kernel-splat",
        "reason": "r",
        "seconds": 1.0,
        "splats": list(new),
        "new_splats": list(new),
        "known_issues": [],
        "walks": {"planned": 2, "ran": 2, "cut_short": []},
        "verdict": verdict,
    }


def shard_json(k: int, n: int, rows: list[dict[str, Any]], unmet: list[str]) -> dict[str, Any]:
    order = ["a (x86_64)", "b (x86_64)", "c (x86_64)", "d (x86_64)"]
    return {
        "catalogue": {"path": "c.toml", "sha256": "s", "scenarios": []},
        "kernels": {"x86_64": {"release": "6.1", "origin": "o"}},
        "exit_code": 0,
        "interrupted": None,
        "not_run": [],
        "known_issues": [],
        "shard": {"index": k, "count": n, "scenarios": order, "full": True},
        "possibly_fixed_candidates": [{"title": t, "arch": "x86_64"} for t in unmet],
        "results": rows,
    }


def test_merge_orders_counts_and_keeps_what_no_shard_met() -> None:
    one = shard_json(1, 2, [row("c", "passed"), row("a", "passed")], ["X", "Y"])
    two = shard_json(2, 2, [row("d", "failed", ("NEW",)), row("b", "passed")], ["Y"])
    merged = merge([("s1", one), ("s2", two)])
    assert [r["scenario"] for r in merged["results"]] == ["a", "b", "c", "d"]
    assert (merged["passed"], merged["total"], merged["exit_code"]) == (3, 4, 1)
    assert merged["new_splats"] == ["NEW"]
    assert merged["walks"]["ran"] == 8
    assert [p["title"] for p in merged["possibly_fixed"]] == ["Y"]  # X was met by shard 2


def test_a_missing_shard_is_loud_and_never_green() -> None:
    one = shard_json(1, 2, [row("a", "passed"), row("c", "passed")], [])
    merged = merge([("s1", one)])
    assert merged["missing_shards"] == ["2/2"]
    assert merged["not_run"] == ["b (x86_64)", "d (x86_64)"]
    assert merged["exit_code"] == 125
    assert merged["possibly_fixed"] == []


def test_merge_refuses_what_does_not_belong_together() -> None:
    one = shard_json(1, 2, [row("a", "passed")], [])
    with pytest.raises(UserError, match="twice"):
        merge([("s1", one), ("s1 again", copy.deepcopy(one))])
    other = shard_json(2, 2, [row("b", "passed")], [])
    other["catalogue"]["sha256"] = "t"
    with pytest.raises(UserError, match="different catalogues"):
        merge([("s1", one), ("s2", other)])
    whole = shard_json(2, 2, [], [])
    del whole["shard"]
    with pytest.raises(UserError, match="not a shard"):
        merge([("s1", one), ("run", whole)])
    with pytest.raises(UserError, match="nothing to merge"):
        merge([])
