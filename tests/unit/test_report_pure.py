"""The report's memory-map data and pictures (harness/report/memmap.py), from the catalogue's
real plans: rows, cells, the shared sections, and hot-plugged blocks by step."""

import re
import xml.etree.ElementTree as ET

import pytest

from harness.catalogue.model import CATALOGUE, load_catalogue
from harness.report.memmap import CELL, SHARED, memory_map_svg
from harness.run import plan_pure

pytestmark = pytest.mark.unit
SCENARIOS = {s.name: s for s in load_catalogue(CATALOGUE)}
SVG = "{http://www.w3.org/2000/svg}"


def picture(name: str) -> ET.Element:
    planned = plan_pure(SCENARIOS[name])
    data = planned.hotplug.memory_map() if planned.hotplug else planned.layout.memory_map()
    return ET.fromstring(memory_map_svg(data))


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def test_collision_map_has_a_row_per_section_and_marks_the_shared_one() -> None:
    svg = picture("legacy-lower-half")
    labels = [t for t in texts(svg) if t.startswith("section ")]
    assert labels == ["section 7 @ 0x38000000", "section 8 @ 0x40000000", "section 9 @ 0x48000000"]
    fills = [r.get("fill") for r in svg.iter(f"{SVG}rect") if r.get("height") == "16"]
    # 3 sections x 64 subsections; section 8 is 32 device cells then 32 RAM cells
    assert len(fills) == 3 * 64
    assert fills[64:96] == [CELL["D"][0]] * 32 and fills[96:128] == [CELL["R"][0]] * 32
    outlined = [r for r in svg.iter(f"{SVG}rect") if r.get("stroke") == SHARED]
    assert len(outlined) == 1
    assert "shared: RAM and device memory" in texts(svg)


def test_subsection_layout_shows_one_device_cell() -> None:
    svg = picture("legacy-subsection")
    fills = [r.get("fill") for r in svg.iter(f"{SVG}rect") if r.get("height") == "16"]
    assert fills.count(CELL["D"][0]) == 1


def test_hotplug_map_follows_the_planned_states() -> None:
    planned = plan_pure(SCENARIOS["dimm-plug-cycle"])
    assert planned.hotplug is not None
    data = planned.hotplug.memory_map()
    assert len(data["steps"]) == 9
    first = data["blocks"]["32"]
    # plug (offline), online, walk, offline, walk, unplug (gone) ...
    assert first[:6] == ["offline", "online", "online", "offline", "offline", "gone"]
    later = data["blocks"]["40"]
    assert later[:6] == [""] * 6 and later[6:] == ["offline", "online", "gone"]
    svg = ET.fromstring(memory_map_svg(data))
    assert {"block 32", "block 33", "block 40"} <= set(texts(svg))


def test_partial_remove_leaves_one_block_gone() -> None:
    planned = plan_pure(SCENARIOS["partial-hot-remove-arm64"])
    assert planned.hotplug is not None
    blocks = planned.hotplug.memory_map()["blocks"]
    assert [b for b, states in blocks.items() if states[-1] == "gone"] == ["17"]


def test_no_map_no_picture() -> None:
    assert memory_map_svg(None) == ""
    assert memory_map_svg({"kind": "blocks", "steps": [], "blocks": {}}) == ""
    assert re.match(
        r"<svg",
        memory_map_svg(
            {"sections": [{"number": 1, "start": 0, "subsections": "R", "collides": False}]}
        ),
    )
