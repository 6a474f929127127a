"""The HTML report of `memharness run`: the page a person opens first.

Self-contained (no scripts, no external files but the run directories it links to): the table
of scenarios, then what needs attention (failures with each splat's frames decoded to
file:line where the run had a vmlinux with debug info), then known issues, skips and cut-short
walks in sections of their own, then each scenario with its memory map as a picture, its
steps and links to its console log, transcript and reproducer.
"""

import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.report.memmap import memory_map_svg
from harness.report.summary import (
    EXPECTED,
    FAILED,
    KNOWN_ISSUE,
    PASSED,
    SKIPPED,
    UNEXPECTED_PASS,
    known_issues_met,
    row,
    verdict,
)
from harness.result import RunResult

Locations = dict[str, list[dict[str, Any]]]  # splat title → frames with "where"
COLOUR = {PASSED: "#2e7d32", SKIPPED: "#757575", EXPECTED: "#ef6c00", KNOWN_ISSUE: "#ef6c00"}
ARTIFACT_LINKS = (
    ("console.log", "console log"),
    ("transcript.log", "transcript"),
    ("reproduce.sh", "reproducer"),
    ("splats.json", "splats.json"),
)
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;vertical-align:top}"
    "pre{background:#f4f4f4;padding:8px;overflow-x:auto}section{margin-bottom:2em}"
    ".frames td{font-family:monospace;font-size:12px}"
)


def run_folders(result: RunResult) -> list[Path]:
    """The run directory and those of a phased scenario's other boots."""
    root = Path(result.artifacts)
    extra = sorted(p for p in root.glob("boot-*") if p.is_dir()) if root.is_dir() else []
    return [root, *extra]


def locations(results: Iterable[RunResult]) -> dict[str, Locations]:
    """Each run's decoded frames, from the splats.json its VMs wrote ({} when undecoded)."""
    found: dict[str, Locations] = {}
    for r in results:
        for folder in run_folders(r):
            try:
                data = json.loads((folder / "splats.json").read_text())
            except (OSError, ValueError):
                continue
            for entry in data:
                if entry.get("locations"):
                    found.setdefault(str(r.artifacts), {})[entry["title"]] = entry["locations"]
    return found


def _href(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return html.escape(os.path.relpath(path, base))
        except ValueError:
            pass
    return html.escape(path.resolve().as_uri())


def _links(result: RunResult, base: Path | None) -> str:
    parts = []
    for folder in run_folders(result):
        label = "" if folder == Path(result.artifacts) else f"{folder.name}: "
        for name, text in ARTIFACT_LINKS:
            if (folder / name).is_file():
                parts.append(f"<a href='{_href(folder / name, base)}'>{label}{text}</a>")
    return " · ".join(parts) or "(no run directory)"


def _frames(frames: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f['frame'])}</td>"
        f"<td>{html.escape(' ← '.join(f['where']) or '(no debug info)')}</td></tr>"
        for f in frames
    )
    return f"<table class='frames'><tr><th>frame</th><th>file:line</th></tr>{rows}</table>"


def _failure(result: RunResult, located: Locations) -> str:
    d = row(result)
    parts = [
        f"<h3>{html.escape(result.name)} ({html.escape(str(d['arch']))}): {d['verdict']}</h3>",
        f"<p>{html.escape(str(result.outcome))}: {html.escape(result.reason)}</p>",
    ]
    if d["new_splats"]:
        parts.append(f"<p>new: <b>{html.escape('; '.join(d['new_splats']))}</b></p>")
    for failure in d["failures"]:
        parts.append(f"<p>check failed: {html.escape(failure)}</p>")
    for splat in result.splats:
        parts.append(f"<h4>{html.escape(splat.title)}</h4>")
        if splat.title in located:
            parts.append(_frames(located[splat.title]))
        parts.append(f"<pre>{html.escape(splat.text[:4000])}</pre>")
    parts.append(f"<p>reproduce: <code>{html.escape(result.reproducer)}</code></p>")
    return "".join(parts)


def to_html(
    results: list[RunResult],
    possibly_fixed: list[dict[str, Any]] | None = None,
    located: dict[str, Locations] | None = None,
    base: Path | None = None,
) -> str:
    """The page; ``located`` from ``locations``, ``base`` the page's directory (links are
    relative to it, so the page and its run directories can move together)."""
    located = located or {}
    e = html.escape
    rows = []
    for r in results:
        d = row(r)
        colour = COLOUR.get(d["verdict"], "#c62828")
        rows.append(
            f"<tr><td><a href='#{e(r.name)}-{d['arch']}'>{e(d['scenario'])}</a></td>"
            f"<td>{d['arch']}</td><td style='color:{colour};font-weight:bold'>{d['outcome']}</td>"
            f"<td>{d['verdict']}</td><td>{d['seconds']}s</td>"
            f"<td>{','.join(map(str, d['collision_sections']))}</td>"
            f"<td>{e(r.reason if d['verdict'] != PASSED else '')}</td></tr>"
        )
    table = (
        "<table><tr><th>scenario</th><th>arch</th><th>outcome</th><th>verdict</th><th>time</th>"
        f"<th>shared sections</th><th>reason</th></tr>{''.join(rows)}</table>"
    )
    bad = [r for r in results if verdict(r) in (FAILED, UNEXPECTED_PASS)]
    sections = [f"<section id='summary'><h2>Scenarios ({len(results)})</h2>{table}</section>"]
    if bad:
        body = "".join(_failure(r, located.get(str(r.artifacts), {})) for r in bad)
        sections.append(f"<section id='failures'><h2>Failures ({len(bad)})</h2>{body}</section>")
    known = known_issues_met(results)
    if known:
        items = "".join(
            f"<li><b>{e(k['title'])}</b> [{e(k['upstream'])}]: {e(k['why'])}<br>"
            f"in {e(', '.join(k['scenarios']))}</li>"
            for k in known
        )
        sections.append(
            f"<section id='known'><h2>Known issues ({len(known)}; they do not fail the run)"
            f"</h2><ul>{items}</ul></section>"
        )
    expected = [(r, str(r.details.get("known_bug"))) for r in results if verdict(r) == EXPECTED]
    sections.append(_listed("expected", "Known bugs reproduced (expected)", expected))
    skipped = [(r, s) for r in results for s in r.details.get("skipped", [])]
    skipped += [(r, r.reason) for r in results if verdict(r) == SKIPPED]
    sections.append(_listed("skipped", f"Skipped ({len(skipped)}; not passes)", skipped))
    cut = [(r, w) for r in results for w in row(r)["walks"]["cut_short"]]
    sections.append(_listed("cut", f"Cut short ({len(cut)} walks; not passes)", cut))
    if possibly_fixed:
        items = "".join(f"<li>{e(p['title'])} ({e(p['arch'])})</li>" for p in possibly_fixed)
        sections.append(
            "<section id='possibly-fixed'><h2>Possibly fixed (registered for this kernel, met "
            f"by no scenario)</h2><ul>{items}</ul></section>"
        )
    for r in results:
        sections.append(_scenario(r, base, located.get(str(r.artifacts), {})))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>memharness run</title>"
        f"<style>{STYLE}</style></head><body><h1>memharness run</h1>{''.join(sections)}"
        "</body></html>\n"
    )


def _listed(anchor: str, heading: str, entries: list[tuple[RunResult, str]]) -> str:
    """A section listing one line per (scenario, text); nothing when there are none."""
    if not entries:
        return ""
    items = "".join(
        f"<li>{html.escape(r.name)} ({html.escape(str(r.machine.get('arch')))}): "
        f"{html.escape(text)}</li>"
        for r, text in entries
    )
    return f"<section id='{anchor}'><h2>{html.escape(heading)}</h2><ul>{items}</ul></section>"


def _scenario(r: RunResult, base: Path | None, located: Locations) -> str:
    e = html.escape
    d = row(r)
    splats = "".join(
        f"<details><summary>{e(s.title)}</summary>"
        f"{_frames(located[s.title]) if s.title in located else ''}"
        f"<pre>{e(s.text[:4000])}</pre></details>"
        for s in r.splats
    )
    steps = "".join(
        f"<tr><td>{e(s['name'])}</td><td>{s['status']}</td>"
        f"<td>{s['seconds']:.2f}s</td><td>{e(s['reason'])}</td></tr>"
        for s in r.details.get("steps", [])
    )
    plan = r.details.get("hotplug", [])
    plan_list = "".join(f"<li>{e(p)}</li>" for p in plan)
    return (
        f"<section id='{e(r.name)}-{d['arch']}'><h2>{e(r.name)} ({d['arch']}): {d['verdict']}</h2>"
        f"<p>{e(str(r.details.get('summary', '')))}</p>"
        f"{memory_map_svg(r.details.get('memory_map'))}"
        f"{f'<ol>{plan_list}</ol>' if plan_list else ''}{splats}"
        f"<pre>{e(str(r.details.get('layout', '')))}</pre>"
        f"<table><tr><th>step</th><th>status</th><th>time</th><th>why</th></tr>{steps}</table>"
        f"<p>{_links(r, base)}</p><p>reproduce: <code>{e(d['reproducer'])}</code></p></section>"
    )
