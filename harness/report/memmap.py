"""The memory map as a picture (pure: map data in, SVG text out).

Two pictures, one per scenario kind, both from the data a run records in its details
(``memory_map``):

- ``sections``: a collision layout, one row per 128 MiB section, one cell per 2 MiB subsection
  (System RAM, device memory, hole); a section that holds both is marked shared, because that
  is the case the pfn walkers exist to test.
- ``blocks``: a hotplug scenario, one row per memory block the steps touch and one column per
  step, each cell the state the planner predicts after that step (online, offline, device
  memory, gone), so a reader sees what was hot-plugged, offlined and removed, and when.
"""

import html
from typing import Any

# (fill, legend) per cell state: colours a person tells apart, also in grey print.
CELL = {
    "R": ("#4caf50", "System RAM"),
    "D": ("#7e57c2", "device memory (ZONE_DEVICE)"),
    ".": ("#eeeeee", "hole"),
    "online": ("#29b6f6", "hot-plugged, online"),
    "offline": ("#ffb74d", "hot-plugged, offline"),
    "device": ("#7e57c2", "hot-plugged device memory"),
    "gone": ("#ffffff", "removed"),
}
SHARED = "#d32f2f"
CELL_W, CELL_H, LABEL_W, ROW_GAP = 9, 16, 210, 4


def _legend(keys: list[str], y: int) -> list[str]:
    parts, x = [], 0
    for key in keys:
        fill, label = CELL[key]
        parts.append(
            f"<rect x='{x}' y='{y}' width='12' height='12' fill='{fill}' stroke='#999'/>"
            f"<text x='{x + 16}' y='{y + 11}' font-size='12'>{html.escape(label)}</text>"
        )
        x += 24 + 7 * len(label)
    return parts


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' font-family='sans-serif'>"
        f"<title>{html.escape(title)}</title>{''.join(body)}</svg>"
    )


def sections_svg(data: dict[str, Any]) -> str:
    """Rows of subsections; shared sections outlined and labelled."""
    sections = data.get("sections", [])
    body: list[str] = []
    cells = max((len(s["subsections"]) for s in sections), default=64)
    size_mib = int(data.get("section_size", 128 << 20)) >> 20
    for row, s in enumerate(sections):
        y = 22 + row * (CELL_H + ROW_GAP)
        shared = bool(s.get("collides"))
        label = f"section {s['number']} @ {int(s['start']):#x}"
        weight = "bold" if shared else "normal"
        body.append(
            f"<text x='0' y='{y + 12}' font-size='12' font-weight='{weight}'>"
            f"{html.escape(label)}</text>"
        )
        for i, kind in enumerate(s["subsections"]):
            fill = CELL.get(kind, CELL["."])[0]
            body.append(
                f"<rect x='{LABEL_W + i * CELL_W}' y='{y}' width='{CELL_W - 1}' "
                f"height='{CELL_H}' fill='{fill}'/>"
            )
        if shared:
            body.append(
                f"<rect x='{LABEL_W - 2}' y='{y - 2}' width='{cells * CELL_W + 3}' "
                f"height='{CELL_H + 4}' fill='none' stroke='{SHARED}' stroke-width='2'/>"
                f"<text x='{LABEL_W + cells * CELL_W + 8}' y='{y + 12}' font-size='12' "
                f"fill='{SHARED}'>shared: RAM and device memory</text>"
            )
    width = LABEL_W + cells * CELL_W + 230
    legend_y = 22 + len(sections) * (CELL_H + ROW_GAP) + 6
    body.insert(
        0,
        f"<text x='0' y='12' font-size='12'>each cell is a 2 MiB subsection of a "
        f"{size_mib} MiB section</text>",
    )
    body += _legend(["R", "D", "."], legend_y)
    return _svg(width, legend_y + 20, body, "memory map: sections and subsections")


def blocks_svg(data: dict[str, Any]) -> str:
    """Memory blocks (rows) by step (columns)."""
    steps: list[str] = data.get("steps", [])
    blocks: dict[str, list[str]] = data.get("blocks", {})
    col_w = 26
    body = [
        "<text x='0' y='12' font-size='12'>memory blocks (rows) after each step (columns, "
        "numbered as in the step list)</text>"
    ]
    for i in range(len(steps)):
        body.append(f"<text x='{LABEL_W + i * col_w + 6}' y='34' font-size='11'>{i + 1}</text>")
    ordered = sorted(blocks.items(), key=lambda kv: int(kv[0]))
    for row, (block, states) in enumerate(ordered):
        y = 42 + row * (CELL_H + ROW_GAP)
        body.append(f"<text x='0' y='{y + 12}' font-size='12'>block {block}</text>")
        for i, state in enumerate(states):
            if not state:
                continue
            fill = CELL.get(state, CELL["."])[0]
            body.append(
                f"<rect x='{LABEL_W + i * col_w}' y='{y}' width='{col_w - 2}' "
                f"height='{CELL_H}' fill='{fill}' stroke='#bbb'/>"
            )
    legend_y = 42 + len(ordered) * (CELL_H + ROW_GAP) + 6
    body += _legend(["online", "offline", "device", "gone"], legend_y)
    width = max(LABEL_W + len(steps) * col_w + 20, 640)
    return _svg(width, legend_y + 20, body, "memory map: hot-plugged memory blocks by step")


def memory_map_svg(data: dict[str, Any] | None) -> str:
    """The picture for a run's ``memory_map`` ("" when the run recorded none)."""
    if not data:
        return ""
    if data.get("kind") == "blocks":
        return blocks_svg(data) if data.get("blocks") else ""
    return sections_svg(data) if data.get("sections") else ""
