"""Playbook layout: the catalog says what runs where and the playbooks only when; variables are
visible from every playbook; validation stops bad input before any host is touched; every role
documents its variables."""

from __future__ import annotations

import json
import re
import sys
import uuid

import pytest
import yaml

from labctl import catalog, schema
from tests.conftest import ROOT, lab_group, run_playbook

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml"))
DEPLOY = yaml.safe_load((ROOT / "playbooks" / "deploy.yml").read_text())


def catalog_services(copy) -> list[str]:
    return list(schema.platform(copy.load(), "erebus").labctl_services)


def test_playbooks_under_playbooks_see_group_and_host_vars(inventory_copy):
    """A playbook in playbooks/ reads group_vars/all, group_vars/lab, host_vars and the vault."""
    probe = ROOT / "playbooks" / f"_probe_{uuid.uuid4().hex}.yml"
    message = (
        "{{ {'domain': labctl_domain, 'user': ansible_user, 'gpu': gpu.vendor,"
        " 'secret': redis_password | length} | to_json }}"
    )
    probe.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Probe",
                    "hosts": "orpheus",
                    "gather_facts": False,
                    "tasks": [{"name": "Show", "ansible.builtin.debug": {"msg": message}}],
                }
            ]
        )
    )
    try:
        proc = run_playbook(
            str(probe.relative_to(ROOT)),
            "-i",
            str(inventory_copy.dir),
            env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", **inventory_copy.env},
        )
    finally:
        probe.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    msg = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["orpheus"]["msg"]
    assert json.loads(msg) == {"domain": "home.arpa", "user": "labctl", "gpu": "nvidia", "secret": 32}


@pytest.mark.parametrize("playbook", ["site.yml", *[f"playbooks/{p}" for p in PLAYBOOKS]])
def test_every_playbook_validates_first(playbook):
    plays = yaml.safe_load((ROOT / playbook).read_text())
    first = plays[0]
    while "ansible.builtin.import_playbook" in first:
        target = (ROOT / playbook).parent / first["ansible.builtin.import_playbook"]
        playbook = str(target.relative_to(ROOT))
        first = yaml.safe_load(target.read_text())[0]
    assert [r["role"] for r in first["roles"]] == ["validate_inventory"]
    assert first["gather_facts"] is False and "always" in first["tags"]


def test_bad_inventory_stops_site_yml_before_any_host_is_touched(inventory_copy):
    """Two problems: both named; no task of any role runs; no host is contacted (every host is given
    an address nothing answers on and a connection that would fail at once)."""
    inventory_copy.edit("host_vars/kratos.yml", lambda d: d["gpu"].update(vendor="intel"))
    inventory_copy.edit("hosts.yml", lambda d: lab_group(d, "db_primary")["hosts"].update(thanatos=None))
    (inventory_copy.dir / "group_vars" / "lab.yml").write_text(
        "ansible_connection: community.docker.docker_api\nansible_host: labctl-no-such-container\n"
        "ansible_user: labctl\n"
    )
    proc = run_playbook("site.yml", "-i", str(inventory_copy.dir), env=inventory_copy.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "host 'kratos', variable 'gpu.vendor': unknown GPU vendor 'intel'" in out
    assert "host 'thanatos', variable 'db_primary': only one primary is allowed" in out
    assert "TASK [common" not in out and "TASK [docker" not in out and "Wait for the machine" not in out
    assert "UNREACHABLE" not in out


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_document_every_default(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    entry_points = spec["argument_specs"]
    assert "main" in entry_points
    options: dict[str, dict] = {}
    for entry in entry_points.values():
        options.update(entry.get("options") or {})
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    required = {k for k, v in options.items() if v.get("required")}
    assert set(options) - required == set(defaults)
    assert all(k.startswith(f"{role}_") for k in options), "public variables carry the role's prefix"
    for name, option in options.items():
        assert option.get("description"), f"{role}: {name} has no description"


def test_tier_plays_follow_labctl_tiers():
    """One play per position in labctl_tiers, in order, each handing the dispatcher its number;
    validation refuses more tiers than there are plays."""
    tier_plays = [p for p in DEPLOY if str(p.get("hosts", "")).startswith("labctl_tier_")]
    assert [p["hosts"] for p in tier_plays] == [f"labctl_tier_{n}" for n in range(1, schema.MAX_TIERS + 1)]
    assert [p["roles"] for p in tier_plays] == [[{"role": "stacks", "stacks_tier": n}] for n in range(1, 9)]
    names = [p["name"] for p in DEPLOY]
    assert names.index("Prepare every machine") < names.index("Tier 1") < names.index("Deployment complete")


def test_the_deploy_names_no_service_role():
    roles = set()
    for play in DEPLOY:
        roles.update(r["role"] for r in play.get("roles", []) if isinstance(r, dict))
        for task in play.get("tasks", []) + play.get("pre_tasks", []):
            include = task.get("ansible.builtin.include_role") or task.get("ansible.builtin.import_role")
            if include:
                roles.add(include["name"])
    # Machine plumbing only (no catalog service): the stacks come from the catalog via `stacks`.
    assert roles == {
        "gpu_facts",
        "common",
        "docker",
        "gpu_nvidia",
        "gpu_rocm",
        "nfs_client",
        "firewall",
        "stacks",
    }


RENDERED_ONLY = yaml.safe_load((ROOT / "roles" / "sim_lab" / "defaults" / "main.yml").read_text())[
    "sim_lab_rendered_only"
]


def test_every_catalog_service_has_its_role_stand_in_and_lab_test(inventory_copy):
    """Each service runs in the simulated lab (a stand-in image and a lab test), or is one the
    simulated lab cannot run and its rendering is tested for every real machine instead. A service
    that is a mode of another (postgres_replica of postgres) has a role of its own that includes
    the other's, and runs the other's image."""
    rendering_tests = "\n".join(
        (ROOT / "tests" / "unit" / f).read_text()
        for f in ("test_inference_stacks.py", "test_observability_stacks.py", "test_edge.py")
    )
    services = catalog_services(inventory_copy)
    image_keys = {i.service: i.image_key for i in catalog.instances(inventory_copy.load())}
    for name in services:
        role = ROOT / "roles" / name
        assert (role / "meta" / "argument_specs.yml").is_file(), name
        if not (role / "templates" / "compose.yaml.j2").is_file():
            tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text())
            [included] = [t["ansible.builtin.include_role"]["name"] for t in tasks]
            assert included in services and image_keys[name] == included, name
            assert (ROOT / "roles" / included / "templates" / "compose.yaml.j2").is_file(), name
        if name in RENDERED_ONLY:
            # A unit test renders its stack for a real machine: render(...)/stack(...) of the
            # inventory copy naming the role, or render_stack in the service's own test file.
            own = ROOT / "tests" / "unit" / f"test_{name}.py"
            call = re.compile(rf'\w*\(inventory_copy, [^,()]+, "{name}"')
            assert call.search(rendering_tests) or (
                own.is_file() and f'"{name}",' in own.read_text() and "render_stack" in own.read_text()
            ), name
            continue
        assert (ROOT / "sim" / "images" / image_keys.get(name, name) / "Dockerfile").is_file(), name
        lab_test = ROOT / "tests" / "lab" / f"test_{name}.py"
        shared = ROOT / "tests" / "lab" / f"test_{image_keys.get(name, name)}.py"
        assert lab_test.is_file() or (shared.is_file() and name in shared.read_text()), name


def test_every_role_that_deploys_a_stack_is_a_catalog_service(inventory_copy):
    services = set(catalog_services(inventory_copy))
    for role in ROLES:
        tasks = "\n".join(p.read_text() for p in (ROOT / "roles" / role / "tasks").glob("*.yml"))
        if "name: compose_stack" in tasks and role != "stacks":
            assert role in services, f"roles/{role} deploys a compose stack but the catalog has no '{role}'"


def test_every_stand_in_replaces_a_pinned_image(inventory_copy):
    images = schema.platform(inventory_copy.load(), "erebus").labctl_images
    for recipe in (ROOT / "sim" / "images").iterdir():
        assert recipe.name in images, f"sim/images/{recipe.name} stands in for no labctl_images key"


def test_the_deploy_mark_is_the_last_play():
    """labctl deploy reads the mark as a fact; it must stay the final play and run on every machine."""
    last = DEPLOY[-1]
    assert last["hosts"] == "lab"
    assert last["tasks"][-1]["ansible.builtin.set_fact"] == {"labctl_deployed": True}


def test_the_catalog_order_is_the_deploy_order(inventory_copy):
    lab = inventory_copy.load()
    assert catalog.tiers(lab) == [
        "base",
        "databases",
        "edge",
        "secondary",
        "additional",
        "gpu",
        "monitoring",
        "workstation",
    ]


def test_no_fact_cache_outlives_a_run(tmp_path):
    """The simulated lab's machines have the real machines' names: facts cached from one
    inventory would stand in for the other's. A fact one run caches is gone in the next."""
    from labctl.runner import run_playbook

    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "erebus": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                }
            }
        )
    )
    first = tmp_path / "first.yml"
    first.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Cache",
                    "hosts": "all",
                    "gather_facts": True,
                    "tasks": [
                        {
                            "name": "Cache a fact",
                            "ansible.builtin.set_fact": {"virtualization_probe": "sim", "cacheable": True},
                        }
                    ],
                }
            ]
        )
    )
    second = tmp_path / "second.yml"
    second.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Look",
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Look for it",
                            "ansible.builtin.set_fact": {
                                "seen": "{{ virtualization_probe is defined"
                                " or ansible_facts.virtualization_type is defined }}"
                            },
                        }
                    ],
                }
            ]
        )
    )
    assert run_playbook(ROOT, str(first), [inventory]).succeeded
    result = run_playbook(ROOT, str(second), [inventory])
    assert result.succeeded
    assert result.hosts["erebus"].facts["seen"] is False
