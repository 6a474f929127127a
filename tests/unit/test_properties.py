"""Property-based tests: random layouts, step lists and data files are either planned
consistently or refused with a one-line UserError, never a traceback (pure)."""

import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.arch import ARCHES, get_arch
from harness.catalogue.model import Scenario
from harness.errors import UserError
from harness.hotplug.plan import plan_steps
from harness.hotplug.steps import Action
from harness.layout.model import Layout, Region
from harness.layout.planner import DEVICE, HOLE, RAM, Plan, plan
from harness.splat.parser import load_rules

M = 1 << 20
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Sizes and addresses around the interesting boundaries: subsections (2M), sections (128M),
# the q35 4G split, and values that are not aligned at all.
sizes = st.sampled_from([1 * M, 2 * M, 3 * M, 16 * M, 64 * M, 100 * M, 128 * M, 256 * M, 1 << 30])
addresses = st.one_of(
    st.integers(0, 64).map(lambda n: n * 64 * M),
    st.integers(0, 8 << 30),
    st.sampled_from([0x40000000, 0x44000000, 0x45000000, 0x84000000, 0x100000000, 0x104000000]),
)
regions = st.lists(
    st.fixed_dictionaries({"start": addresses.map(hex), "size": sizes.map(str)}), max_size=3
)
layouts = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["legacy", "nfit", "dt", "hotplug", "bogus"]),
        "memory": st.sampled_from(["512M", "1G", "1280M", "2G", "3G", "5G"]),
    },
    optional={
        "pmem": regions,
        "nvdimms": regions,
        "dimms": regions,
        "mem_limit": st.sampled_from(["512M", "1088M", "1G", "3G"]),
        "slots": st.integers(0, 8),
        "maxmem": st.sampled_from(["0", "2G", "4G", "8G", "64G"]),
        "label_size": st.sampled_from(["0", "128K"]),
    },
)


def check_plan(p: Plan) -> None:
    """What every accepted plan must satisfy."""
    sub = p.arch.subsection_size
    for region in (*p.ram, *p.device):
        assert region.size > 0
    for region in p.device:
        assert region.start % sub == 0 and region.size % sub == 0, region
    everything = sorted((*p.ram, *p.device), key=lambda r: r.start)
    for a, b in itertools.pairwise(everything):
        assert a.end <= b.start, f"{a} overlaps {b}"
    for section in p.sections:
        assert len(section.subsections) == p.arch.section_size // sub
        assert set(section.subsections) <= {RAM, DEVICE, HOLE, "O"}
        for i, c in enumerate(section.subsections):
            cell = Region(section.start + i * sub, sub)
            if c == DEVICE:
                assert any(cell.overlaps(r) for r in p.device), (section.number, i)
            if c == RAM:
                assert any(cell.overlaps(r) for r in p.ram), (section.number, i)
    assert p.collisions == [
        s.number for s in p.sections if RAM in s.subsections and DEVICE in s.subsections
    ]


# Near-valid layouts per kind, so that many are accepted and their plans get checked too.
subsection_multiples = st.integers(1, 64).map(lambda n: n * 2 * M)


def pmem_near(low: int, high: int) -> st.SearchStrategy[list[dict[str, str]]]:
    """1-2 pmem regions starting on a subsection between low and high (in 2M units)."""
    region = st.fixed_dictionaries(
        {
            "start": st.integers(low, high).map(lambda n: hex(n * 2 * M)),
            "size": subsection_multiples.map(str),
        }
    )
    return st.lists(region, min_size=1, max_size=2)


legacy = st.tuples(
    st.fixed_dictionaries(
        {
            "kind": st.just("legacy"),
            "memory": st.sampled_from(["2G", "3G"]),
            "pmem": pmem_near(128, 1800),
        }
    ),
    st.just("x86_64"),
)
dt = st.tuples(
    st.fixed_dictionaries(
        {
            "kind": st.just("dt"),
            "memory": st.sampled_from(["1280M", "2G"]),
            "mem_limit": st.sampled_from(["1088M", "1G", "1152M"]),
            "pmem": pmem_near(0x400, 0x4A0),
        }
    ),
    st.just("arm64"),
)
anything = st.tuples(layouts, st.sampled_from(sorted(ARCHES)))


@SETTINGS
@given(case=st.one_of(anything, legacy, dt))
def test_random_layouts_are_planned_consistently_or_refused(
    case: tuple[dict[str, Any], str],
) -> None:
    data, arch = case
    try:
        layout = Layout.from_data(data)
        p = plan(layout, get_arch(arch))
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    check_plan(p)
    assert p.collisions or layout.kind == "hotplug"


step_ids = st.sampled_from(["d0", "d1", "n0", "vmem0", "hp0", "nope"])
steps = st.one_of(
    st.fixed_dictionaries(
        {
            "plug": st.sampled_from(["pc-dimm", "nvdimm", "virtio-mem", "bogus"]),
            "id": step_ids,
            "size": st.sampled_from(["128M", "256M", "100M", "1G", "64G"]),
        },
        optional={"addr": addresses.map(hex)},
    ),
    st.builds(
        lambda a, i: {a: i},
        st.sampled_from(["unplug", "online", "offline", "walk", "churn"]),
        step_ids,
    ),
    st.fixed_dictionaries({"resize": step_ids, "size": st.sampled_from(["0", "128M", "3G"])}),
    st.just({"module": "mh_hotplug"}),
    st.fixed_dictionaries(
        {"add_memory": step_ids, "start": addresses.map(hex), "size": sizes.map(str)}
    ),
    st.fixed_dictionaries(
        {"offline_and_remove_memory": step_ids, "start": addresses.map(hex), "size": sizes.map(str)}
    ),
    st.fixed_dictionaries({"online": step_ids, "zone": st.sampled_from(["movable", "x"])}),
)
random_hotplug_layouts = st.fixed_dictionaries(
    {
        "kind": st.just("hotplug"),
        "memory": st.sampled_from(["1G", "2G"]),
        "slots": st.integers(0, 4),
        "maxmem": st.sampled_from(["0", "4G", "8G"]),
    },
    optional={
        "mem_limit": st.sampled_from(["512M", "768M"]),
        "virtio_mem": st.just([{"id": "vmem0", "size": "1G"}]),
        "online": st.sampled_from(["online_movable", ""]),
    },
)
hotplug_layouts = st.one_of(
    random_hotplug_layouts,
    st.sampled_from(
        [
            {"kind": "hotplug", "memory": "1G", "slots": 4, "maxmem": "8G"},
            {"kind": "hotplug", "memory": "2G", "slots": 2, "maxmem": "4G", "mem_limit": "1G"},
            {
                "kind": "hotplug",
                "memory": "1G",
                "slots": 2,
                "maxmem": "4G",
                "online": "online_movable",
                "virtio_mem": [{"id": "vmem0", "size": "1G"}],
            },
        ]
    ),
)
# A realistic life of a device: mostly in order, sometimes not, so that both the accepted
# plans and the refusals are explored.
lifecycle = st.lists(
    st.sampled_from(
        [
            {"plug": "pc-dimm", "id": "d0", "size": "256M"},
            {"plug": "pc-dimm", "id": "d1", "size": "128M"},
            {"plug": "nvdimm", "id": "n0", "size": "128M"},
            {"online": "d0"},
            {"online": "d1", "zone": "kernel"},
            {"walk": "d0"},
            {"churn": "d0", "rounds": 2},
            {"offline": "d0"},
            {"unplug": "d0"},
            {"unplug": "d1"},
            {"resize": "vmem0", "size": "256M"},
            {"resize": "vmem0", "size": "0"},
        ]
    ),
    min_size=1,
    max_size=8,
)


@SETTINGS
@given(
    layout=hotplug_layouts,
    actions=st.one_of(st.lists(steps, min_size=1, max_size=8), lifecycle, lifecycle),
    arch=st.sampled_from(sorted(ARCHES)),
)
def test_random_step_lists_are_planned_consistently_or_refused(
    layout: dict[str, Any], actions: list[dict[str, Any]], arch: str
) -> None:
    try:
        layout_plan = plan(Layout.from_data(layout), get_arch(arch), expect_collision=False)
        hotplug = plan_steps(layout_plan, tuple(Action.from_data(a) for a in actions))
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    block = layout_plan.arch.section_size
    window = layout_plan.window
    live: dict[str, Region] = {}
    for planned in hotplug.steps:
        region = planned.region
        if planned.step.action == "plug":
            assert region is not None and window is not None
            assert region.start % block == 0 and region.start >= window.start
            assert region.end <= window.end
            for other_id, other in live.items():
                assert not region.overlaps(other), (planned.label, other_id)
            live[planned.step.id] = region
        elif planned.step.action == "unplug":
            live.pop(planned.step.target, None)
        for b in (*planned.blocks, *planned.gone):
            assert b >= 0


toml_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-5, 5),
        st.text(max_size=8),
        st.sampled_from(["2G", "legacy", "x86_64", "fsdax-mem", "kpageflags"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
scenario_keys = st.sampled_from(
    [
        "name",
        "arch",
        "summary",
        "layout",
        "modes",
        "walkers",
        "teardown",
        "requires",
        "poison",
        "known_bug",
        "seed_modes",
        "steps",
        "cmdline",
        "typo",
    ]
)


@SETTINGS
@given(st.dictionaries(scenario_keys, toml_values, max_size=8))
def test_random_scenario_tables_load_or_are_refused(data: dict[str, Any]) -> None:
    try:
        scenario = Scenario.from_data(data)
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert isinstance(scenario.name, str) and isinstance(scenario.teardown, bool)


rule_tables = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=5),
        "kind": st.sampled_from(["BUG", "WARNING"]),
        "start": st.sampled_from(["^BUG: (?P<what>.*)", "^(", "[", "x"]),
        "title": st.text(max_size=8),
        "fatal": st.booleans(),
        "fatl": st.booleans(),
        "cases": st.lists(
            st.dictionaries(st.sampled_from(["when", "title", "whne"]), st.text(max_size=4)),
            max_size=2,
        ),
    },
)
rule_files = st.fixed_dictionaries(
    {},
    optional={
        "report": st.lists(rule_tables, max_size=3),
        "skip": st.lists(st.sampled_from(["^foo", "(", "bar$"]), max_size=2),
        "boundaries": st.dictionaries(
            st.sampled_from(["end", "before", "ends"]), st.sampled_from(["^x", "[", "y"])
        ),
        "typo": st.just(1),
    },
)


@SETTINGS
@given(rule_files)
def test_random_rule_files_load_or_are_refused(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.toml"
        path.write_text(_toml(data))
        try:
            load_rules.__wrapped__(path)
        except UserError as exc:
            assert "\n" not in str(exc) and str(exc)


def _toml(data: dict[str, Any]) -> str:
    """A minimal TOML writer for the shapes above (tables, arrays of tables, scalars)."""
    top, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(
                f"[{key}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in value.items())
            )
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                body = ""
                for k, v in item.items():
                    body += f"{k} = {_inline(v)}\n"
                tables.append(f"[[{key}]]\n{body}")
        else:
            top.append(f"{key} = {json.dumps(value)}\n")
    return "".join(top) + "\n".join(tables)


def _inline(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)
