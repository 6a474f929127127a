"""What `memharness bisect` prints and writes (pure: a result in, text out)."""

import html
import json

from harness.bisect.driver import BisectResult


def _rate(result: BisectResult) -> str:
    return (
        f"reproduced {result.reproduced} of {result.measured} run(s) at the bad endpoint; "
        f"{result.runs_per_step} run(s) per step"
    )


def text(result: BisectResult) -> str:
    lines = [f"target title: {result.title}", _rate(result), ""]
    header = f"{'step':<14} {'commit':<12} {'verdict':<7} {'build':>6} {'runs':>4}  reason"
    lines += [header, "-" * len(header)]
    for s in result.steps:
        build = f"{s.build_seconds:.0f}s" if s.build_seconds is not None else "-"
        lines.append(
            f"{s.role:<14} {s.commit.hash[:12]:<12} {s.verdict!s:<7} {build:>6} {s.runs:>4}  "
            f"{s.reason}"
        )
        lines.append(f"{'':<14} {s.commit.subject[:70]}")
        if s.titles:
            lines.append(f"{'':<14} titles: {'; '.join(s.titles)}")
        lines.append(f"{'':<14} artifacts: {s.artifacts}")
    lines.append("")
    if result.culprit:
        c = result.culprit
        lines += [
            f"first bad commit: {c.hash}",
            f"  {c.subject}",
            f"  {c.author}, {c.date}",
        ]
    else:
        lines.append(f"no single commit ({result.stopped}); the first bad commit is one of:")
        lines += [f"  {c.hash[:12]} {c.subject}" for c in result.candidates]
    lines.append(f"confidence: {result.confidence:.4f} (no good verdict hid a flaky bad commit)")
    reproducer = result.reproducer()
    if reproducer:
        lines.append(f"reproduce: {reproducer}")
    return "\n".join(lines)


def to_json(result: BisectResult) -> str:
    return json.dumps(result.to_json(), indent=2)


def to_html(result: BisectResult) -> str:
    """A self-contained page: the answer first, then every step."""
    e = html.escape
    colour = {"bad": "#c62828", "good": "#2e7d32", "skip": "#757575"}
    rows = "".join(
        f"<tr><td>{e(s.role)}</td><td><code>{s.commit.hash[:12]}</code></td>"
        f"<td>{e(s.commit.subject)}</td>"
        f"<td style='color:{colour[str(s.verdict)]};font-weight:bold'>{s.verdict}</td>"
        f"<td>{'-' if s.build_seconds is None else f'{s.build_seconds:.0f}s'}</td>"
        f"<td>{s.runs}</td><td>{e(s.reason)}</td><td>{e('; '.join(s.titles))}</td>"
        f"<td><code>{e(s.artifacts)}</code></td></tr>"
        for s in result.steps
    )
    if result.culprit:
        c = result.culprit
        answer = (
            f"<h2>First bad commit</h2><p><code>{c.hash}</code><br><b>{e(c.subject)}</b><br>"
            f"{e(c.author)}, {e(c.date)}</p>"
        )
    else:
        items = "".join(
            f"<li><code>{c.hash[:12]}</code> {e(c.subject)}</li>" for c in result.candidates
        )
        answer = f"<h2>No single commit ({e(result.stopped)})</h2><ul>{items}</ul>"
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;vertical-align:top}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>memharness bisect</title>"
        f"<style>{style}</style></head><body><h1>memharness bisect</h1>"
        f"<p>target title: <b>{e(result.title)}</b><br>{e(_rate(result))}<br>"
        f"confidence: {result.confidence:.4f}</p>{answer}"
        f"<p>reproduce: <code>{e(result.reproducer())}</code></p><table><tr><th>step</th>"
        "<th>commit</th><th>subject</th><th>verdict</th><th>build</th><th>runs</th><th>reason</th>"
        f"<th>titles seen</th><th>artifacts</th></tr>{rows}</table></body></html>\n"
    )
