"""Splat parser against the syzkaller corpus, on the half the rules are tuned on, the half that
is only measured, and the whole (harness/splat/corpus.py ``half``).

    python bench/splat_corpus.py [--corpus DIR] [--show N] [--filter TEXT]

Figures: crash/no-crash agreement on non-corrupted cases, exact first-title agreement,
CORRUPTED agreement and FRAME agreement, and the parse time of the whole corpus.  Targets
(issue 14): >= 90% first title on the measured half and on the whole, 100% detection on
non-corrupted cases of both halves, CORRUPTED >= 95%, the whole corpus in <= 2 s.  --show
prints mismatches of the *tune* half only: the measured half is never looked at case by case.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.splat.corpus import MEASURE, TUNE, Case, half, load  # noqa: E402
from harness.splat.model import Splat  # noqa: E402
from harness.splat.stream import parse_log  # noqa: E402

CORPUS = ROOT / "tests" / "corpora" / "syzkaller-linux-report"


def evaluate(results: list[tuple[Case, list[Splat]]]) -> dict[str, object]:
    crash_ok = crash_total = title_ok = titled = corrupt_ok = frame_ok = framed = 0
    misses: list[tuple[str, str, str]] = []
    for case, splats in results:
        got = splats[0].title if splats else ""
        if not case.corrupted:
            crash_total += 1
            crash_ok += bool(splats) == case.has_crash
        if case.has_crash:
            titled += 1
            title_ok += got == case.titles[0]
            corrupt_ok += bool(splats) and splats[0].corrupted == case.corrupted
            if case.frame:
                framed += 1
                frame_ok += bool(splats) and splats[0].frame == case.frame
            if got != case.titles[0]:
                misses.append((case.name, case.titles[0], got))
        elif splats:
            misses.append((case.name, "", got))
    return {
        "cases": len(results),
        "crash_agreement": crash_ok / max(crash_total, 1),
        "crash_total": crash_total,
        "title_agreement": title_ok / max(titled, 1),
        "titled": titled,
        "corrupted_agreement": corrupt_ok / max(titled, 1),
        "frame_agreement": frame_ok / max(framed, 1),
        "framed": framed,
        "misses": misses,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="a syzkaller-format corpus")
    ap.add_argument("--show", type=int, default=0, help="print N mismatches of the tune half")
    ap.add_argument("--filter", default="", help="only mismatches whose expected title has TEXT")
    args = ap.parse_args()
    cases = load(args.corpus)
    start = time.perf_counter()
    results = [(c, parse_log(c.log)) for c in cases]
    seconds = time.perf_counter() - start
    print(f"cases: {len(cases)}  parse time: {seconds:.2f} s")
    print(f"{'':<8} {'cases':>5} {'detect':>7} {'title':>7} {'corrupt':>8} {'frame':>7}")
    groups = {
        TUNE: [r for r in results if half(r[0].name) == TUNE],
        MEASURE: [r for r in results if half(r[0].name) == MEASURE],
        "whole": results,
    }
    figures = {}
    for name, group in groups.items():
        r = figures[name] = evaluate(group)
        print(
            f"{name:<8} {r['cases']:>5} {r['crash_agreement']:>7.1%} {r['title_agreement']:>7.1%}"
            f" {r['corrupted_agreement']:>8.1%} {r['frame_agreement']:>7.1%}"
        )
    gap = figures[TUNE]["title_agreement"] - figures[MEASURE]["title_agreement"]  # type: ignore[operator]
    print(f"title gap tune - measure: {gap:+.1%} (more than a few points: rules fitted to cases)")
    misses = [m for m in figures[TUNE]["misses"] if args.filter in m[1]]  # type: ignore[attr-defined]
    for name, want, got in misses[: args.show]:
        print(f"  {name:>5}  want: {want or '(none)'}\n         got:  {got or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
