"""Splat parser against the syzkaller corpus: crash/no-crash agreement, title agreement, speed.

    python bench/splat_corpus.py [--show N] [--filter TEXT]

Targets (issue 3): 100% crash/no-crash agreement on non-corrupted cases, >= 90% exact
first-title agreement, the whole corpus in under 5 s.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.splat.corpus import Case, load  # noqa: E402
from harness.splat.stream import parse_log  # noqa: E402

CORPUS = ROOT / "tests" / "corpora" / "syzkaller-linux-report"


def evaluate(cases: list[Case]) -> dict[str, object]:
    crash_ok = crash_total = title_ok = title_alt_ok = titled = corrupt_ok = 0
    misses: list[tuple[str, str, str]] = []
    start = time.perf_counter()
    results = [(c, parse_log(c.log)) for c in cases]
    seconds = time.perf_counter() - start
    for case, splats in results:
        got = splats[0].title if splats else ""
        if not case.corrupted:
            crash_total += 1
            crash_ok += bool(splats) == case.has_crash
        if case.has_crash:
            titled += 1
            title_ok += got == case.titles[0]
            title_alt_ok += got == case.titles[0] or got in case.alts
            if splats:
                corrupt_ok += splats[0].corrupted == case.corrupted
            if got != case.titles[0]:
                misses.append((case.name, case.titles[0], got))
        elif splats:
            misses.append((case.name, "", got))
    return {
        "cases": len(cases),
        "seconds": seconds,
        "crash_agreement": crash_ok / crash_total,
        "crash_total": crash_total,
        "title_agreement": title_ok / titled,
        "title_or_alt": title_alt_ok / titled,
        "titled": titled,
        "corrupted_flag_agreement": corrupt_ok / titled,
        "misses": misses,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", type=int, default=0, help="print N mismatches")
    ap.add_argument("--filter", default="", help="only mismatches whose expected title has TEXT")
    args = ap.parse_args()
    r = evaluate(load(CORPUS))
    print(f"cases: {r['cases']}  parse time: {r['seconds']:.2f} s")
    print(
        f"crash/no-crash agreement (non-corrupted, n={r['crash_total']}): "
        f"{r['crash_agreement']:.1%}"
    )
    print(f"first-title exact agreement (n={r['titled']}): {r['title_agreement']:.1%}")
    print(f"first-title agreement counting ALT titles: {r['title_or_alt']:.1%}")
    print(f"corrupted-flag agreement: {r['corrupted_flag_agreement']:.1%}")
    misses = [m for m in r["misses"] if args.filter in m[1]]  # type: ignore[attr-defined]
    for name, want, got in misses[: args.show]:
        print(f"  {name:>5}  want: {want or '(none)'}\n         got:  {got or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
