"""Host firewalls from the catalog: each service's ports admit the machines of the groups its
allow_from names (and the client networks where it names the workstation), nothing else; the
rules nftables loads say exactly that. Proven on the wire in tests/lab/test_firewall.py."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from labctl import firewall, validate
from tests.conftest import add_gpu_node, render_stack


def by_port(view: dict) -> dict[int, dict]:
    return {r["port"]: r for r in view["rules"]}


def test_each_port_admits_the_machines_its_allow_from_names(inventory_copy):
    lab = inventory_copy.load()
    erebus = by_port(firewall.view(lab, "erebus"))
    # PostgreSQL: the replica, the gateway and web UI's machine, Prometheus's; and Uptime Kuma's
    # (hephaestus, .11), which watches every health port (tests/unit/test_uptime_kuma.py).
    assert erebus[5432]["ipv4"] == [
        "192.168.50.11/32",
        "192.168.50.12/32",
        "192.168.50.20/32",
        "192.168.50.30/32",
    ]
    assert erebus[5432]["service"] == "postgres"
    # Redis (a Docker-published port): the gateway's machine and Prometheus's, not the replica's.
    assert erebus[6379]["ipv4"] == ["192.168.50.11/32", "192.168.50.20/32", "192.168.50.30/32"]
    # The node exporter: monitoring (and Uptime Kuma); its PostgreSQL exporter: monitoring only.
    assert erebus[9100]["ipv4"] == ["192.168.50.11/32", "192.168.50.30/32"]
    assert erebus[9187]["ipv4"] == ["192.168.50.12/32", "192.168.50.20/32", "192.168.50.30/32"]
    assert 22 not in erebus  # SSH is not the catalog's
    assert firewall.view(lab, "erebus")["ports"] == sorted(erebus)


def test_client_networks_reach_only_what_is_open_to_the_workstation(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/platform.yml",
        lambda d: d.update({"firewall_client_networks": ["192.168.60.0/24", "192.168.50.40"]}),
    )
    lab = inventory_copy.load()
    orpheus = by_port(firewall.view(lab, "orpheus"))
    # The web UI is open to the workstation: the client networks come in (the workstation's own
    # address is merged into nothing new).
    assert orpheus[3000]["ipv4"] == [
        "192.168.50.11/32",
        "192.168.50.30/32",
        "192.168.50.40/32",
        "192.168.60.0/24",
    ]
    # The engines are not: only the gateway, the web UI and monitoring.
    assert "192.168.60.0/24" not in orpheus[11434]["ipv4"]


def test_a_new_machine_of_a_group_is_admitted_where_its_group_is(inventory_copy):
    add_gpu_node(inventory_copy, "ceto", "192.168.50.24")
    lab = inventory_copy.load()
    # A GPU node is no client of the databases: nothing opens to it...
    assert "192.168.50.24/32" not in by_port(firewall.view(lab, "erebus"))[5432]["ipv4"]
    # ...and its own engine admits the gateway's machine.
    assert "192.168.50.20/32" in by_port(firewall.view(lab, "ceto"))[11434]["ipv4"]


def test_after_a_failover_the_new_primary_admits_its_replica(inventory_copy):
    """labctl db promote thanatos / rejoin erebus: the replica now runs on erebus, outside its
    group; the primary, now on thanatos, must let it in for replication."""
    inventory_copy.edit(
        "group_vars/all/platform.yml",
        lambda d: d.update(
            {"labctl_placement_overrides": {"postgres": ["thanatos"], "postgres_replica": ["erebus"]}}
        ),
    )
    lab = inventory_copy.load()
    thanatos = by_port(firewall.view(lab, "thanatos"))
    assert thanatos[5432]["service"] == "postgres"
    admitted = [ipaddress.ip_network(n) for n in thanatos[5432]["ipv4"]]
    assert any(ipaddress.ip_address("192.168.50.10") in n for n in admitted)  # erebus, the replica now
    assert any(ipaddress.ip_address("192.168.50.20") in n for n in admitted)  # the gateway still
    assert by_port(firewall.view(lab, "erebus"))[5432]["service"] == "postgres_replica"


def test_a_client_network_that_is_no_network_is_refused_naming_host_and_variable(inventory_copy):
    (inventory_copy.dir / "host_vars" / "zelus.yml").write_text("firewall_client_networks: [lan]\n")
    problems = validate.validate(inventory_copy.load())
    assert [(p.host, p.variable) for p in problems] == [("zelus", "firewall_client_networks")]
    assert "'lan' is not a network" in problems[0].message


def test_the_rules_file_drops_other_sources_on_the_lab_interface_only(inventory_copy, tmp_path):
    files = render_stack(
        inventory_copy,
        tmp_path,
        "firewall",
        "erebus",
        ("labctl-firewall.nft",),
        variables={"labctl_instance": {}, "__firewall_addresses": {"stdout": '[{"ifname": "enp3s0"}]'}},
    )
    rules = files["labctl-firewall.nft"]
    for chain in ("input", "forward"):
        assert f"type filter hook {chain} priority filter - 10; policy accept;" in rules
    assert rules.count('iifname != "enp3s0" accept') == 2
    admitted = "192.168.50.11/32, 192.168.50.20/32, 192.168.50.30/32"
    assert f"meta l4proto tcp ct original proto-dst 6379 ip saddr {{ {admitted} }} accept" in rules
    drop = [
        line.strip() for line in rules.splitlines() if line.strip().endswith('"catalog ports, other sources"')
    ]
    assert len(drop) == 2 and "{ 5432, 6379, 9100, 9121, 9187, " in drop[0]
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed here: the lab test checks the rules with it")
    path = tmp_path / "rules.nft"
    path.write_text(rules)
    check = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_health_checks_the_rules_only_where_the_firewall_is_on(inventory_copy):
    lab = inventory_copy.load()
    assert firewall.probe_spec(lab, "erebus") is None  # off by default
    inventory_copy.edit("host_vars/erebus.yml", lambda d: d.update({"firewall_enabled": True}))
    lab = inventory_copy.load()
    assert firewall.probe_spec(lab, "erebus") == {"table": firewall.TABLE, "file": firewall.RULES_FILE}
    assert firewall.probe_spec(lab, "kratos") is None
