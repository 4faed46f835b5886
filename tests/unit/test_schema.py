"""A typed inventory: bad input never crashes and never passes.

The named cases come from trying the foundation as a user would; the generative test replaces
each variable of the shipped inventory with values of the wrong type and shape.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl.cli import app
from labctl.validate import validate
from tests.conftest import ROOT, InventoryCopy, lab_group


def problems(copy: InventoryCopy) -> list[tuple[str, str, str]]:
    return [(p.host, p.variable, p.message) for p in validate(copy.load())]


def named(copy: InventoryCopy) -> set[tuple[str, str]]:
    return {(h, v) for h, v, _ in problems(copy)}


def set_address(copy: InventoryCopy, value: Any) -> None:
    copy.edit("hosts.yml", lambda d: lab_group(d, "edge")["hosts"]["hephaestus"].update(lab_address=value))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("127.0.0.5", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.9", "multicast"),
        ("169.254.10.1", "link-local"),
        ("10.0.0", "not an IP address"),
        (3232248331, "must be a string"),
        (["192.168.50.11"], "valid string"),
        (None, "valid string"),
    ],
)
def test_addresses_a_machine_cannot_have(inventory_copy, value, words):
    set_address(inventory_copy, value)
    found = problems(inventory_copy)
    assert [(h, v) for h, v, _ in found] == [("hephaestus", "lab_address")], found
    assert words in found[0][2]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("tag", 1.10, "quote it"),  # YAML reads 1.10 as 1.1
        ("tag", "v1 2", "not an image tag"),
        ("tag", "latest", "not a pinned version"),
        ("repository", "Quay.io/Prometheus/Node-Exporter", "not an image repository"),
        ("digest", "sha256:1234", "not an image digest"),
        ("registry", "x", "not a known setting"),
    ],
)
def test_image_references_are_checked(inventory_copy, field, value, words):
    inventory_copy.edit(
        "group_vars/all/images.yml", lambda d: d["labctl_images"]["redis"].update({field: value})
    )
    found = problems(inventory_copy)
    assert found[0][0] == "all"
    assert any(v.startswith("labctl_images.redis") and words in m for _, v, m in found), found


def test_a_digest_alone_pins_an_image(inventory_copy):
    digest = "sha256:" + "a" * 64
    inventory_copy.edit(
        "group_vars/all/images.yml", lambda d: d["labctl_images"]["redis"].update(tag=None, digest=digest)
    )
    assert problems(inventory_copy) == []
    from labctl import catalog

    redis = next(i for i in catalog.instances(inventory_copy.load()) if i.service == "redis")
    assert redis.image == f"docker.io/library/redis@{digest}"


@pytest.mark.parametrize("value", ["maybe", 2, ["no"], "sometimes"])
def test_a_stack_toggle_must_be_a_boolean(inventory_copy, value):
    (inventory_copy.dir / "host_vars" / "zelus.yml").write_text(
        yaml.safe_dump({"node_exporter_enabled": value})
    )
    found = problems(inventory_copy)
    assert [(h, v) for h, v, _ in found] == [("zelus", "node_exporter_enabled")]
    assert "not a boolean" in found[0][2]


@pytest.mark.parametrize("value", ["no", "false", False, 0, "off"])
def test_boolean_words_turn_a_stack_off(inventory_copy, value):
    from labctl import catalog

    (inventory_copy.dir / "host_vars" / "zelus.yml").write_text(
        yaml.safe_dump({"node_exporter_enabled": value})
    )
    assert problems(inventory_copy) == []
    assert "zelus" not in [
        i.host for i in catalog.instances(inventory_copy.load(), services=["node_exporter"])
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -4, 0, "24GB", True])
def test_gpu_memory_must_be_a_real_size(inventory_copy, value):
    inventory_copy.edit("host_vars/kratos.yml", lambda d: d["gpu"].update(vram_gb=value))
    assert ("kratos", "gpu.vram_gb") in named(inventory_copy)


def test_relative_base_directory(inventory_copy):
    inventory_copy.edit("group_vars/all/storage.yml", lambda d: d.update(labctl_base_dir="opt/ai-platform"))
    # ... and the backup directory derived from it (under <base>/nas) is named too.
    assert named(inventory_copy) == {("all", "labctl_base_dir"), ("all", "labctl_backup_dir")}


def test_a_typo_in_the_catalog_is_named(inventory_copy):
    def change(d: dict[str, Any]) -> None:
        d["labctl_services"]["redis"]["placment"] = d["labctl_services"]["redis"].pop("placement")

    inventory_copy.edit("group_vars/all/services.yml", change)
    assert named(inventory_copy) == {
        ("all", "labctl_services.redis.placment"),
        ("all", "labctl_services.redis.placement"),
    }


def test_health_needs_a_path_or_a_command(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml",
        lambda d: d["labctl_services"]["redis"]["health"].update(path="/ping"),
    )
    found = problems(inventory_copy)
    assert [(h, v) for h, v, _ in found] == [("all", "labctl_services.redis.health")]
    assert "either an HTTP `path` or a `command`" in found[0][2]


def test_a_value_one_host_overrides_is_checked_on_that_host(inventory_copy):
    (inventory_copy.dir / "host_vars" / "local.yml").write_text(
        "labctl_image_overrides:\n  redis: 'Not An Image'\n"
    )
    assert named(inventory_copy) == {("local", "labctl_image_overrides.redis")}


# --- generative: every variable of the shipped inventory, given the wrong type or shape ---------


def _locations() -> list[tuple[str, tuple[Any, ...], Any]]:
    """(file relative to the inventory, key path, shipped value) for every variable and every
    value nested in one (mapping keys and list items), in every file of the shipped inventory."""
    found: list[tuple[str, tuple[Any, ...], Any]] = []

    def walk(file: str, path: tuple[Any, ...], value: Any) -> None:
        found.append((file, path, value))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(file, (*path, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(file, (*path, index), item)

    for path in sorted((ROOT / "group_vars").rglob("*.yml")) + sorted((ROOT / "host_vars").rglob("*.yml")):
        relative = str(path.relative_to(ROOT))
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            walk(relative, (key,), value)
    hosts = yaml.safe_load((ROOT / "inventory" / "hosts.yml").read_text())

    def hosts_walk(node: dict[str, Any], trail: tuple[Any, ...]) -> None:
        for name, host_vars in (node.get("hosts") or {}).items():
            for key, value in (host_vars or {}).items():
                found.append(("hosts.yml", (*trail, "hosts", name, key), value))
        for child, sub in (node.get("children") or {}).items():
            hosts_walk(sub or {}, (*trail, "children", child))

    hosts_walk(hosts["all"], ("all",))
    return found


LOCATIONS = _locations()
# Keys whose value may be absent, so null is a correct way to leave them unset.
MAY_BE_NULL = {"alias", "tag", "digest", "metrics", "image", "serves", "ansible_host"}


def _wrong(original: Any) -> st.SearchStrategy[Any]:
    text = st.text(alphabet="abcxyz -!", min_size=1, max_size=8).filter(
        lambda s: s.strip().lower() not in ("y", "n", "yes", "no", "t", "f", "on", "off", "true", "false")
    )
    mapping = st.dictionaries(st.sampled_from(["x", "bogus"]), st.integers(), min_size=1, max_size=2)
    listing = st.lists(st.integers(), min_size=1, max_size=2)
    if isinstance(original, bool):
        return st.one_of(st.just("maybe"), st.integers(2, 99), listing, mapping, st.none())
    if isinstance(original, int | float):
        return st.one_of(text, listing, mapping, st.none(), st.just(math.nan), st.booleans())
    if isinstance(original, str):
        return st.one_of(st.integers(), st.floats(allow_nan=True), listing, mapping, st.none(), st.booleans())
    if isinstance(original, list):
        return st.one_of(text, st.integers(), mapping, st.none())
    return st.one_of(text, st.integers(), listing, st.none())


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, tuple[Any, ...], Any, Any]:
    file, path, original = draw(st.sampled_from(LOCATIONS))
    value = draw(_wrong(original).filter(lambda v: not (v is None and path[-1] in MAY_BE_NULL)))
    return file, path, original, value


def _expected(file: str, path: tuple[Any, ...]) -> tuple[str, str]:
    """The host and variable a problem must name for a change at `path` in `file`."""
    if file == "hosts.yml":
        return str(path[-2]), str(path[-1])
    keys = path
    variable = str(keys[0]) + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys[1:])
    if file.startswith("host_vars/"):
        return Path(file).stem, variable
    return "all", variable


def _related(named: str, changed: str) -> bool:
    def boundary(longer: str, shorter: str) -> bool:
        return longer == shorter or longer.startswith((shorter + ".", shorter + "["))

    return boundary(named, changed) or boundary(changed, named)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> InventoryCopy:
    """The shipped inventory with its vault, made once; each example changes a clone of it."""
    return InventoryCopy(tmp_path_factory.mktemp("shipped"))


@settings(
    max_examples=int(os.environ.get("LABCTL_SCHEMA_EXAMPLES", "80")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(change=mutation())
def test_any_variable_of_the_wrong_type_is_named_never_a_traceback(tmp_path_factory, shipped, change):
    file, path, original, value = change
    base = tmp_path_factory.mktemp("inv")
    copy = shipped.clone(base)
    relative = file.removeprefix("inventory/")
    target = copy.dir / relative
    data = yaml.safe_load(target.read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    target.write_text(yaml.safe_dump(data, sort_keys=False))

    result = CliRunner().invoke(
        app, ["--inventory", str(copy.dir), "validate", "--json"], env=copy.env, catch_exceptions=True
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{file} {path}: {original!r} -> {value!r} raised {result.exception!r}"
    )
    assert result.exit_code == 1, f"{file} {path}: {original!r} -> {value!r} passed: {result.output}"
    report = json.loads(result.stdout)
    host, variable = _expected(file, path)
    # The problem names the variable changed, a value inside it, or the mapping that holds it
    # (a rule between fields, such as "a path or a command", names their mapping).
    assert any(p["host"] == host and _related(p["variable"], variable) for p in report["problems"]), (
        f"{file} {path}: {original!r} -> {value!r}: expected ({host}, {variable}) in {report['problems']}"
    )
    shutil.rmtree(base)
