"""`labctl keys` against a stand-in for LiteLLM's key API.

LiteLLM keeps virtual keys only with its database, and its database layer needs Prisma's query
engine, which cannot be fetched here (docs/gateway.md): the simulated lab's gateway runs without
one. So these tests talk to KeyApiDouble, a test double of LiteLLM 1.106.12's /key/generate,
/key/list and /key/delete (request and answer shapes read from its key_management_endpoints.py):
they check what labctl sends and how it reads the answers, not LiteLLM."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from labctl.cli import app

MASTER = "sk-master-of-the-double"


class KeyApiDouble(ThreadingHTTPServer):
    """LiteLLM's key API in memory: keys by hash, the key itself returned only by /key/generate."""

    def __init__(self, database: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.database = database
        self.keys: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: KeyApiDouble

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {MASTER}":
            self._answer(401, {"error": {"message": "Authentication Error", "code": "401"}})
            return False
        if not self.server.database:
            self._answer(400, {"error": {"message": "No connected db.", "type": "no_db_connection"}})
            return False
        return True

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.server.requests.append(("GET", url.path, parse_qs(url.query)))
        if not self._authorized():
            return
        query = parse_qs(url.query)
        page, size = int(query["page"][0]), int(query["size"][0])
        keys = list(self.server.keys.values())
        pages = max(1, -(-len(keys) // size))
        self._answer(
            200,
            {
                "keys": keys[(page - 1) * size : page * size],
                "total_count": len(keys),
                "current_page": page,
                "total_pages": pages,
            },
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", self.path, body))
        if not self._authorized():
            return
        if self.path == "/key/generate":
            key = "sk-" + secrets.token_urlsafe(16)
            token = secrets.token_hex(32)
            stored = {
                "token": token,
                "key_name": f"sk-...{key[-4:]}",
                "spend": 0.0,
                "expires": None,
                "blocked": None,
                **body,
            }
            self.server.keys[token] = stored
            self._answer(200, {**stored, "key": key})
        elif self.path == "/key/delete":
            gone = [t for t, k in self.server.keys.items() if k.get("key_alias") in body["key_aliases"]]
            for token in gone:
                del self.server.keys[token]
            self._answer(200, {"deleted_keys": body["key_aliases"] if gone else []})
        else:
            self._answer(404, {"detail": "Not Found"})


@pytest.fixture
def double() -> Iterator[KeyApiDouble]:
    server = KeyApiDouble()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def keys(copy, double: KeyApiDouble, *args: str) -> Any:
    return CliRunner().invoke(
        app,
        ["--inventory", str(copy.dir), "keys", *args, "--url", double.url, "--json"],
        env={**copy.env, "LABCTL_VAULT_PASSWORD": ""},
    )


@pytest.fixture
def copy_with_master(inventory_copy):
    """The inventory copy whose vault holds the double's master key."""
    from labctl import vault
    from tests.conftest import VAULT_PASSWORD

    values = vault.read(inventory_copy.vault_file, VAULT_PASSWORD)
    values["litellm_master_key"] = MASTER
    vault.write(inventory_copy.vault_file, values, VAULT_PASSWORD)
    return inventory_copy


def test_a_key_is_made_with_its_limits_listed_and_revoked(copy_with_master, double):
    made = keys(
        copy_with_master,
        double,
        "create",
        "alice-laptop",
        "--model",
        "llama3.1:8b",
        "--rpm",
        "30",
        "--tpm",
        "20000",
        "--budget",
        "5",
        "--budget-period",
        "30d",
        "--expires",
        "90d",
    )
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)["key"]
    assert key.startswith("sk-")
    sent = next(body for method, path, body in double.requests if path == "/key/generate")
    assert sent == {
        "key_alias": "alice-laptop",
        "models": ["llama3.1:8b"],
        "metadata": {"made_by": "labctl"},
        "rpm_limit": 30,
        "tpm_limit": 20000,
        "max_budget": 5.0,
        "budget_duration": "30d",
        "duration": "90d",
    }
    listed = keys(copy_with_master, double, "list")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["alias"] == "alice-laptop" and row["models"] == ["llama3.1:8b"]
    assert (row["rpm"], row["tpm"], row["budget"], row["budget_period"]) == (30, 20000, 5.0, "30d")
    # The key itself is never listed, only LiteLLM's masked name.
    assert key not in listed.stdout and row["key"] == f"sk-...{key[-4:]}"
    gone = keys(copy_with_master, double, "revoke", "alice-laptop")
    assert gone.exit_code == 0 and json.loads(gone.stdout) == {"revoked": ["alice-laptop"]}
    assert double.keys == {}
    again = keys(copy_with_master, double, "revoke", "alice-laptop")
    assert again.exit_code == 1 and "no key is named 'alice-laptop'" in again.stderr


def test_a_name_is_taken_once(copy_with_master, double):
    assert keys(copy_with_master, double, "create", "ci").exit_code == 0
    second = keys(copy_with_master, double, "create", "ci")
    assert second.exit_code == 1 and "exists already" in second.stderr
    assert len(double.keys) == 1


def test_a_model_the_gateway_does_not_offer_is_refused_before_asking(copy_with_master, double):
    result = keys(copy_with_master, double, "create", "bob", "--model", "gpt-5")
    assert result.exit_code == 2 and "gpt-5 is no model of the gateway" in result.stderr
    assert double.requests == []


def test_listing_pages_through_every_key(copy_with_master, double):
    for n in range(105):
        double.keys[f"t{n}"] = {"token": f"t{n}", "key_alias": f"k{n}", "key_name": "sk-...abcd"}
    listed = keys(copy_with_master, double, "list")
    assert len(json.loads(listed.stdout)) == 105
    assert [q["page"] for m, p, q in double.requests if p == "/key/list"] == [["1"], ["2"]]


def test_a_gateway_without_its_database_says_so(copy_with_master, double):
    double.database = False
    result = keys(copy_with_master, double, "list")
    assert result.exit_code == 1
    assert "keeps no keys without its database" in " ".join(result.stderr.split())


def test_the_catalogs_gateway_without_a_database_is_refused_before_asking(copy_with_master):
    (copy_with_master.dir / "host_vars" / "orpheus.yml").write_text(
        (copy_with_master.dir / "host_vars" / "orpheus.yml").read_text() + "litellm_database_enabled: false\n"
    )
    result = CliRunner().invoke(
        app, ["--inventory", str(copy_with_master.dir), "keys", "list"], env=copy_with_master.env
    )
    assert result.exit_code == 1
    assert "orpheus: the gateway keeps no keys" in " ".join(result.stderr.split())
