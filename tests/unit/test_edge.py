"""The edge tier, which the simulated lab cannot run (no Traefik binary is reachable here): Traefik's
stack rendered for hephaestus from the real inventory, checked by `docker compose config`, the
hardening rules and Traefik's documented JSON Schema (SchemaStore's, vendored); its routes derived
from the catalog; its certificates made by the lab_ca role's own tasks and checked with openssl."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml
from jsonschema import Draft7Validator

from labctl import catalog, edge
from labctl.validate import validate
from tests.conftest import ROOT, render_stack, run_playbook
from tests.hardening import compose_config, problems

SCHEMAS = ROOT / "roles" / "traefik" / "files" / "schemas"
HEPHAESTUS = "192.168.50.11"


def schema_errors(config: dict, schema_file: str) -> list[str]:
    """Traefik's documented schema, applied with jsonschema directly (not labctl's wrapper)."""
    schema = json.loads((SCHEMAS / schema_file).read_text())
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft7Validator(schema).iter_errors(config)
    ]


def stack(copy, tmp_path: Path, role: str, host: str, *names: str, extra: tuple[str, ...] = ()) -> dict:
    tmp_path.mkdir(exist_ok=True)
    files = render_stack(copy, tmp_path, role, host, ("compose.yaml", *names), *extra)
    files["compose"] = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])
    return files


def test_traefik_on_the_edge_machine(inventory_copy, tmp_path):
    files = stack(
        inventory_copy, tmp_path, "traefik", "hephaestus", "traefik.yml", "dynamic.yml", "dashboard-users"
    )
    service = files["compose"]["services"]["traefik"]
    # Hardened like every stack: pinned, unprivileged, no capability, read-only, limits.
    assert problems("traefik", service, {HEPHAESTUS}) == []
    assert service["image"] == "docker.io/library/traefik:v3.5.3"
    assert service["user"] == "65532:65532" and "cap_add" not in service
    assert service["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": 0}
    assert set(service["ports"]) == {f"{HEPHAESTUS}:{p}:{p}" for p in (80, 443, 8082)}
    assert service["healthcheck"]["test"] == [
        "CMD",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:8082/ping",
    ]
    # No Docker socket: its routes are files.
    assert service["volumes"] == ["./config:/etc/traefik:ro"]

    static = yaml.safe_load(files["traefik.yml"])
    assert schema_errors(static, "traefik-v3.json") == []
    assert edge.schema_problems(static, "static") == []
    assert set(static["providers"]) == {"file"}
    assert static["providers"]["file"] == {"directory": "/etc/traefik/dynamic", "watch": True}
    entry = static["entryPoints"]
    assert entry["web"]["http"]["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }
    assert (entry["web"]["address"], entry["websecure"]["address"]) == (":80", ":443")
    assert "tls" in entry["websecure"]["http"]
    # Health and metrics on the lab-only port, the dashboard only through a router.
    assert entry["internal"]["address"] == ":8082"
    assert static["ping"] == {"entryPoint": "internal"}
    assert static["metrics"]["prometheus"]["entryPoint"] == "internal"
    assert static["api"] == {"dashboard": True, "insecure": False}
    assert static["accessLog"]["format"] == "json"
    assert static["accessLog"]["fields"]["headers"]["defaultMode"] == "drop"
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}

    dynamic = yaml.safe_load(files["dynamic.yml"])
    assert schema_errors(dynamic, "traefik-v3-file-provider.json") == []
    assert edge.schema_problems(dynamic, "dynamic") == []
    routers, middlewares = dynamic["http"]["routers"], dynamic["http"]["middlewares"]
    # One router per routed service of the catalog, plus the dashboard.
    expected = {r["service"]: r for r in edge.routes(inventory_copy.load())}
    assert list(expected) == ["uptime_kuma", "litellm", "openwebui", "prometheus", "alertmanager", "grafana"]
    assert set(routers) == {*expected, "dashboard"}
    assert routers["openwebui"]["rule"] == "Host(`chat.home.arpa`)"
    assert routers["litellm"]["rule"] == "Host(`gateway.home.arpa`)"
    assert routers["grafana"]["rule"] == "Host(`grafana.home.arpa`)"
    for name, router in routers.items():
        assert router["entryPoints"] == ["websecure"], name
        assert "security-headers" in router["middlewares"], name
    for name, route in expected.items():
        servers = dynamic["http"]["services"][name]["loadBalancer"]["servers"]
        assert [s["url"] for s in servers] == route["servers"]
    assert dynamic["http"]["services"]["grafana"]["loadBalancer"]["servers"] == [
        {"url": "http://192.168.50.30:3001"}
    ]
    # The gateway's clients send `Authorization: Bearer`: no basic auth, no allowlist on its route.
    assert routers["litellm"]["middlewares"] == ["security-headers"]
    assert routers["openwebui"]["middlewares"] == ["security-headers"]
    # Admin UIs from the admin networks only; the dashboard also behind a password.
    for name in ("prometheus", "alertmanager", "grafana"):
        assert routers[name]["middlewares"] == ["admin-allowlist", "security-headers"], name
    assert routers["dashboard"]["service"] == "api@internal"
    assert routers["dashboard"]["middlewares"] == ["admin-allowlist", "dashboard-auth", "security-headers"]
    assert [n for n, r in routers.items() if "dashboard-auth" in r["middlewares"]] == ["dashboard"]
    assert middlewares["admin-allowlist"]["ipAllowList"]["sourceRange"] == ["192.168.50.0/24"]
    headers = middlewares["security-headers"]["headers"]
    assert headers["stsSeconds"] == 31536000 and headers["contentTypeNosniff"] is True
    assert headers["frameDeny"] is True and headers["referrerPolicy"]
    auth = middlewares["dashboard-auth"]["basicAuth"]
    assert auth["usersFile"] == "/etc/traefik/users/dashboard" and auth["removeHeader"] is True
    assert dynamic["tls"]["stores"]["default"]["defaultCertificate"] == {
        "certFile": "/etc/traefik/certs/tls.crt",
        "keyFile": "/etc/traefik/certs/tls.key",
    }

    # The dashboard's user: a bcrypt hash of the vault's password, the same at every render.
    user, hashed = files["dashboard-users"].strip().split(":", 1)
    password = inventory_copy.load().var("hephaestus", "traefik_dashboard_password")
    assert user == "admin" and hashed.startswith("$2y$")
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert password not in files["dashboard-users"]
    assert edge.htpasswd(password, "admin", "hephaestus.home.arpa") == files["dashboard-users"].strip()


def test_acme_by_dns_is_an_option(inventory_copy, tmp_path):
    options = {
        "traefik_acme_email": "admin@example.org",
        "traefik_acme_dns_provider": "cloudflare",
        "traefik_acme_dns_env": {"CF_DNS_API_TOKEN": "a-token"},
    }
    files = stack(
        inventory_copy, tmp_path, "traefik", "hephaestus", "traefik.yml", extra=("-e", json.dumps(options))
    )
    static = yaml.safe_load(files["traefik.yml"])
    assert schema_errors(static, "traefik-v3.json") == [] and edge.schema_problems(static, "static") == []
    acme = static["certificatesResolvers"]["acme"]["acme"]
    assert acme["dnsChallenge"] == {"provider": "cloudflare"} and acme["email"] == "admin@example.org"
    tls = static["entryPoints"]["websecure"]["http"]["tls"]
    assert tls == {"certResolver": "acme", "domains": [{"main": "home.arpa", "sans": ["*.home.arpa"]}]}
    service = files["compose"]["services"]["traefik"]
    # The provider's token reaches the container from the 0600 .env, never the compose file.
    assert service["environment"] == {"CF_DNS_API_TOKEN": "${CF_DNS_API_TOKEN}"}
    assert "a-token" not in files["compose.yaml"]
    assert "./acme:/data" in service["volumes"]


def test_a_route_is_one_catalog_edit(inventory_copy, tmp_path):
    """A status page on the edge machine and a service on every GPU machine: each gets its router,
    its name on the certificate and in /etc/hosts; several instances are one load balancer."""
    inventory_copy.add_service(
        "status_page",
        "edge",
        {"http": 3002},
        health={"port": "http", "path": "/healthz"},
        allow_from=["edge"],
        route={"port": "http", "admin": True},
    )
    inventory_copy.add_service(
        "embedder",
        "gpu_nvidia",
        {"http": 7000},
        health={"port": "http", "path": "/"},
        allow_from=["edge"],
        route={"port": "http", "name": "embed"},
    )
    lab = inventory_copy.load()
    assert validate(lab) == []
    files = stack(inventory_copy, tmp_path, "traefik", "hephaestus", "dynamic.yml")
    dynamic = yaml.safe_load(files["dynamic.yml"])
    assert schema_errors(dynamic, "traefik-v3-file-provider.json") == []
    routers, services = dynamic["http"]["routers"], dynamic["http"]["services"]
    assert routers["status_page"]["rule"] == "Host(`status-page.home.arpa`)"
    assert routers["status_page"]["middlewares"] == ["admin-allowlist", "security-headers"]
    assert services["status_page"]["loadBalancer"]["servers"] == [{"url": "http://192.168.50.11:3002"}]
    assert services["status_page"]["loadBalancer"]["healthCheck"]["path"] == "/healthz"
    assert routers["embedder"]["rule"] == "Host(`embed.home.arpa`)"
    assert [s["url"] for s in services["embedder"]["loadBalancer"]["servers"]] == [
        f"http://192.168.50.{last}:7000" for last in (20, 21, 22)
    ]
    names = edge.names(lab, "hephaestus")
    assert {"status-page.home.arpa", "embed.home.arpa", "*.home.arpa", "hephaestus.home.arpa"} <= set(names)
    entries = {e["host"]: e["names"] for e in catalog.hosts_entries(lab)}
    assert {"embed.home.arpa", "status-page.home.arpa", "chat.home.arpa"} <= set(entries["hephaestus"])


def test_routed_names_resolve_to_the_edge_while_it_runs(inventory_copy):
    entries = {e["host"]: e["names"] for e in catalog.hosts_entries(inventory_copy.load())}
    assert entries["hephaestus"][2:] == [
        "traefik.home.arpa",
        "uptime.home.arpa",
        "gateway.home.arpa",
        "chat.home.arpa",
        "prometheus.home.arpa",
        "alertmanager.home.arpa",
        "grafana.home.arpa",
    ]
    assert entries["moros"] == ["moros.home.arpa", "moros", "loki.home.arpa"]
    assert edge.public_url(inventory_copy.load(), "openwebui") == "https://chat.home.arpa"
    # Without the edge (as in the simulated lab) the aliases name the services' own machines, and
    # no machine needs the lab's certificate authority.
    inventory_copy.edit("host_vars/hephaestus.yml", lambda d: {**(d or {}), "traefik_enabled": False})
    lab = inventory_copy.load()
    entries = {e["host"]: e["names"] for e in catalog.hosts_entries(lab)}
    assert entries["hephaestus"] == ["hephaestus.home.arpa", "hephaestus", "uptime.home.arpa"]
    assert entries["orpheus"][2:] == ["gateway.home.arpa", "chat.home.arpa"]
    assert edge.view(lab, "hephaestus")["edges"] == []
    assert edge.public_url(lab, "openwebui") is None


def test_validation_names_a_bad_route(inventory_copy):
    def change(d):
        services = d["labctl_services"]
        services["prometheus"]["route"] = {"port": "nope", "admin": True}
        services["grafana"]["route"]["name"] = "chat"
        services["mcpo"]["route"] = {"port": "api", "name": "postgres"}
        services["litellm"]["allow_from"].remove("edge")

    inventory_copy.edit("group_vars/all/services.yml", change)
    inventory_copy.edit(
        "host_vars/hephaestus.yml", lambda d: {**(d or {}), "traefik_admin_allow_from": ["lan"]}
    )
    found = {(p.host, p.variable): p.message for p in validate(inventory_copy.load())}
    assert "not one of its ports" in found[("all", "labctl_services.prometheus.route.port")]
    assert "also the route of openwebui" in found[("all", "labctl_services.grafana.route.name")]
    assert "alias of postgres" in found[("all", "labctl_services.mcpo.route.name")]
    assert "the edge (hephaestus) may not connect" in found[("all", "labctl_services.litellm.allow_from")]
    assert "not a network" in found[("hephaestus", "traefik_admin_allow_from")]


def test_an_admin_allowlist_replaces_the_lab_network(inventory_copy):
    assert edge.admin_allow_from(inventory_copy.load(), "hephaestus") == ["192.168.50.0/24"]
    inventory_copy.edit(
        "host_vars/hephaestus.yml",
        lambda d: {**(d or {}), "traefik_admin_allow_from": ["10.8.0.0/24", "192.168.50.40"]},
    )
    lab = inventory_copy.load()
    assert validate(lab) == []
    assert edge.view(lab, "hephaestus")["admin_allow_from"] == ["10.8.0.0/24", "192.168.50.40/32"]


def test_the_schema_catches_what_traefik_would_refuse():
    assert edge.schema_problems({"entryPoints": {"web": {"adress": ":80"}}}, "static")
    assert edge.schema_problems({"entrypoints": {}}, "static") == [
        "static: entrypoints: not a setting Traefik knows"
    ]
    bad = {"http": {"middlewares": {"auth": {"basicAuth": {"users": "admin:x"}}}}}
    assert edge.schema_problems(bad, "dynamic")
    router = {"http": {"routers": {"x": {"rule": "Host(`x`)"}}}}  # no service
    assert edge.schema_problems(router, "dynamic")


def test_the_dashboard_password_hash_is_stable_and_salted_per_machine():
    first = edge.htpasswd("correct horse battery", "admin", "hephaestus.home.arpa")
    assert first == edge.htpasswd("correct horse battery", "admin", "hephaestus.home.arpa")
    other = edge.htpasswd("correct horse battery", "admin", "athena.home.arpa")
    assert first != other
    for line in (first, other):
        assert bcrypt.checkpw(b"correct horse battery", line.split(":", 1)[1].encode())
        assert not bcrypt.checkpw(b"wrong", line.split(":", 1)[1].encode())
    with pytest.raises(ValueError):
        edge.htpasswd("x" * 73, "admin", "h")


# --- the lab's certificate authority, for real ------------------------------------------------------


def issue(tmp_path: Path, names: list[str], **settings) -> subprocess.CompletedProcess[str]:
    """The lab_ca role's `issue` tasks on this machine, with the CA under tmp_path/ca."""
    playbook = tmp_path / "issue.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Issue",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Issue a certificate",
                            "ansible.builtin.include_role": {"name": "lab_ca", "tasks_from": "issue"},
                            "vars": {"lab_ca_names": names},
                        }
                    ],
                }
            ]
        )
    )
    password = tmp_path / "vault-password"
    password.write_text("unused\n")
    variables = {
        "labctl_domain": "home.arpa",
        "lab_ca_dir": str(tmp_path / "ca"),
        "ansible_python_interpreter": sys.executable,
        **settings,
    }
    proc = run_playbook(
        "-i",
        "localhost,",
        str(playbook),
        "-e",
        json.dumps(variables),
        env={"ANSIBLE_STRATEGY": "linear", "LABCTL_VAULT_PASSWORD_FILE": str(password)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def sans(cert: Path) -> list[str]:
    out = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)).stdout
    return sorted(part.strip().removeprefix("DNS:") for part in out.splitlines()[1].split(","))


def test_the_lab_ca_issues_the_edge_certificate(tmp_path):
    names = ["*.home.arpa", "chat.home.arpa", "gateway.home.arpa", "hephaestus.home.arpa"]
    issue(tmp_path, names)
    ca, leaf = tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "issued" / "localhost" / "tls.crt"
    key = tmp_path / "ca" / "issued" / "localhost" / "tls.key"
    # The chain, the names, the lifetime.
    check = openssl("verify", "-CAfile", str(ca), str(leaf))
    assert check.returncode == 0 and check.stdout.strip() == f"{leaf}: OK", check.stdout + check.stderr
    assert sans(leaf) == sorted(names)
    assert openssl("x509", "-noout", "-checkend", str(396 * 86400), "-in", str(leaf)).returncode == 0
    assert openssl("x509", "-noout", "-checkend", str(398 * 86400), "-in", str(leaf)).returncode == 1
    usage = openssl("x509", "-noout", "-ext", "extendedKeyUsage,basicConstraints", "-in", str(leaf)).stdout
    assert "TLS Web Server Authentication" in usage and "CA:FALSE" in usage
    # The root: a CA limited to the lab's domain, valid ten years; keys readable by their owner only.
    extensions = "basicConstraints,keyUsage,nameConstraints"
    root = openssl("x509", "-noout", "-ext", extensions, "-in", str(ca)).stdout
    assert "CA:TRUE" in root and "Certificate Sign" in root and "DNS:home.arpa" in root
    assert openssl("x509", "-noout", "-checkend", str(3649 * 86400), "-in", str(ca)).returncode == 0
    for secret in (tmp_path / "ca" / "ca.key", key):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o700
    # The key belongs to the certificate.
    public = openssl("x509", "-noout", "-pubkey", "-in", str(leaf)).stdout
    assert public and public == openssl("pkey", "-pubout", "-in", str(key)).stdout

    # Nothing changed: nothing is issued again, no task reports a change.
    before = leaf.read_bytes(), ca.read_bytes()
    again = issue(tmp_path, names)
    assert (leaf.read_bytes(), ca.read_bytes()) == before
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", again.stdout), again.stdout[-1500:]

    # A new route: a new certificate with its name, from the same CA.
    issue(tmp_path, [*names, "grafana.home.arpa"])
    assert leaf.read_bytes() != before[0] and ca.read_bytes() == before[1]
    assert "grafana.home.arpa" in sans(leaf)
    assert openssl("verify", "-CAfile", str(ca), str(leaf)).returncode == 0


def test_a_certificate_near_its_expiry_is_renewed(tmp_path):
    names = ["*.home.arpa", "hephaestus.home.arpa"]
    issue(tmp_path, names, lab_ca_cert_valid_days=20)
    leaf = tmp_path / "ca" / "issued" / "localhost" / "tls.crt"
    assert openssl("x509", "-noout", "-checkend", str(30 * 86400), "-in", str(leaf)).returncode == 1
    issue(tmp_path, names)
    assert openssl("x509", "-noout", "-checkend", str(300 * 86400), "-in", str(leaf)).returncode == 0


def test_the_lab_ca_vouches_for_lab_names_only(tmp_path):
    """The root's name constraint: a certificate it signed for a name outside the lab's domain is
    refused by openssl."""
    issue(tmp_path, ["www.example.org"])
    ca, leaf = tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "issued" / "localhost" / "tls.crt"
    check = openssl("verify", "-CAfile", str(ca), str(leaf))
    assert check.returncode != 0 and "permitted subtree violation" in check.stdout + check.stderr
