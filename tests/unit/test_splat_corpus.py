"""The syzkaller corpus as an oracle: every case's first title and CORRUPTED flag must equal the
corpus's own (syzkaller's answer), except the cases listed in tests/corpora/accepted.toml, each
with the kind of difference.  That list only shrinks: a case that agrees now must leave it
(MEMHARNESS_PRUNE_ACCEPTED=1 removes such entries and never adds one), a listed case whose
title moved fails (the entry says what it was), and a new disagreement fails.
"""

import os
import re
import tomllib
from pathlib import Path

import pytest

from harness.splat.corpus import Case, load
from harness.splat.stream import SplatStream, parse_log

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[1] / "corpora"
CASES = load(ROOT / "syzkaller-linux-report")
ACCEPTED_FILE = ROOT / "accepted.toml"
ACCEPTED: dict[str, dict[str, object]] = tomllib.loads(ACCEPTED_FILE.read_text())["case"]


def answer(case: Case) -> tuple[str, bool]:
    splats = parse_log(case.log)
    return (splats[0].title, splats[0].corrupted) if splats else ("", False)


def agrees(case: Case, title: str, corrupted: bool) -> bool:
    want = case.titles[0] if case.titles else ""
    return title == want and (not want or corrupted == case.corrupted)


def prune() -> list[str]:
    """Removes the entries of cases that agree now; returns their names."""
    agreeing = {c.name for c in CASES if c.name in ACCEPTED and agrees(c, *answer(c))}
    text = ACCEPTED_FILE.read_text()
    for name in agreeing:
        text = re.sub(rf"\[case\.{name}\]\n(?:(?!\[case\.).*\n)*", "", text)
    ACCEPTED_FILE.write_text(text)
    return sorted(agreeing)


def test_every_case_agrees_or_is_an_accepted_disagreement() -> None:
    if os.environ.get("MEMHARNESS_PRUNE_ACCEPTED"):
        prune()
        ACCEPTED.clear()
        ACCEPTED.update(tomllib.loads(ACCEPTED_FILE.read_text())["case"])
    new, moved, fixed = [], [], []
    for case in CASES:
        title, corrupted = answer(case)
        entry = ACCEPTED.get(case.name)
        if agrees(case, title, corrupted):
            if entry:
                fixed.append(case.name)
            continue
        if entry is None:
            new.append(f"{case.name}: want {case.titles[:1]}, got {title!r} ({corrupted=})")
        elif entry["got"] != title:
            moved.append(f"{case.name}: accepted {entry['got']!r}, now {title!r}")
    assert not new, f"{len(new)} new disagreement(s): {new[:5]}"
    assert not moved, f"{len(moved)} accepted title(s) moved: {moved[:5]}"
    assert not fixed, (
        f"{len(fixed)} case(s) agree now: run with MEMHARNESS_PRUNE_ACCEPTED=1 to drop "
        f"them from {ACCEPTED_FILE.name}: {fixed[:10]}"
    )


def test_accepted_entries_name_real_cases_and_say_why() -> None:
    names = {c.name for c in CASES}
    for name, entry in ACCEPTED.items():
        assert name in names, f"accepted case {name} is not in the corpus"
        assert set(entry) <= {"want", "got", "corrupted", "why"} and entry.get("why"), name


def test_crash_no_crash_agreement_is_total_on_uncorrupted_cases() -> None:
    wrong = [c.name for c in CASES if not c.corrupted and bool(parse_log(c.log)) != c.has_crash]
    assert wrong == []


def test_streaming_equals_whole_log_parsing() -> None:
    for case in CASES:
        stream = SplatStream()
        chunk = 97  # odd size: chunks split lines and multi-byte characters
        for i in range(0, len(case.log), chunk):
            stream.feed(case.log[i : i + chunk])
        stream.finish()
        assert [s.title for s in stream.splats] == [s.title for s in parse_log(case.log)], case.name
