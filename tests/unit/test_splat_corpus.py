"""The syzkaller corpus as a golden corpus: agreement floors and exact regression checks.

Run with MEMHARNESS_UPDATE_GOLDEN=1 to rewrite tests/corpora/golden.json after a deliberate
rule change; the diff then shows every title the change moved.
"""

import json
import os
from pathlib import Path

from harness.splat.corpus import load
from harness.splat.stream import SplatStream, parse_log

ROOT = Path(__file__).parents[1] / "corpora"
CASES = load(ROOT / "syzkaller-linux-report")
GOLDEN = ROOT / "golden.json"

# Issue 3 targets 100% and >= 90%; the title floor is where the parser stands today, so any
# regression fails here while bench/splat_corpus.py reports the distance to the target.
TITLE_FLOOR = 0.90


def current() -> dict[str, list[dict[str, object]]]:
    return {
        c.name: [
            {"title": s.title, "kind": s.kind, "corrupted": s.corrupted} for s in parse_log(c.log)
        ]
        for c in CASES
    }


def test_crash_no_crash_agreement_is_total_on_uncorrupted_cases() -> None:
    wrong = [c.name for c in CASES if not c.corrupted and bool(parse_log(c.log)) != c.has_crash]
    assert wrong == []


def test_first_title_agreement_floor() -> None:
    titled = [c for c in CASES if c.has_crash]
    agree = sum(1 for c in titled if (s := parse_log(c.log)) and s[0].title == c.titles[0])
    assert agree / len(titled) >= TITLE_FLOOR


def test_golden_titles() -> None:
    now = current()
    if os.environ.get("MEMHARNESS_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    changed = {k: (golden.get(k), v) for k, v in now.items() if golden.get(k) != v}
    assert not changed, f"{len(changed)} case(s) changed; first: {next(iter(changed.items()))}"


def test_streaming_equals_whole_log_parsing() -> None:
    for case in CASES:
        stream = SplatStream()
        chunk = 97  # odd size: chunks split lines and multi-byte characters
        for i in range(0, len(case.log), chunk):
            stream.feed(case.log[i : i + chunk])
        stream.finish()
        assert [s.title for s in stream.splats] == [s.title for s in parse_log(case.log)], case.name
