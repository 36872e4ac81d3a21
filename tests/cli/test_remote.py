"""The fabguard CLI from a workstation: ``--server URL`` with FABGUARD_TOKEN and ``--ca``, against a real
``fabguard serve`` process. Each command group makes at least one real round trip; refusals keep their code and
exit 3, a server that does not answer exits 4, a command that needs the instance directory exits 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from fabguard.cli.common import state
from fabguard.cli.main import app
from tests.served import ServerProcess, fabguard_command, free_port

runner = CliRunner()


@dataclass
class Remote:
    """A running server and the tokens of the people who work on it from their workstations."""

    home: Path
    server: ServerProcess
    tokens: dict[str, str]  # role -> secret

    @property
    def ca(self) -> Path:
        return self.home / "ca" / "root.pem"

    def run(self, *args: str, who: str = "engineer", ok: bool = True) -> Result:
        env = {"FABGUARD_TOKEN": self.tokens[who], "FABGUARD_SERVER": None, "FABGUARD_CA": None}
        result = runner.invoke(app, ["--server", self.server.url, "--ca", str(self.ca), *args], env=env)
        if ok:
            assert result.exit_code == 0, (args, result.output)
        return result

    def json(self, *args: str, who: str = "engineer") -> Any:
        return json.loads(self.run(*args, "--json", who=who).stdout)

    def local(self, *args: str) -> str:
        result = runner.invoke(app, ["--home", str(self.home), *args], env={"FABGUARD_TOKEN": None})
        assert result.exit_code == 0, (args, result.output)
        return result.stdout


@pytest.fixture(autouse=True)
def _forget_the_server() -> Iterator[None]:
    """The CLI's run state lives in one object for the process: a test that invokes a command group directly
    (not the root command, whose options reset it) must not inherit this module's --server."""
    yield
    state.server = state.ca = state.group = state.command = None


def _secret(output: str) -> str:
    found = re.search(r"fgt_[A-Za-z0-9_-]+", output)
    assert found, output
    return found.group(0)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    home = tmp_path_factory.mktemp("remote") / "home"
    made = runner.invoke(app, ["--home", str(home), "init", "--org", "Acme Devices"], env={"FABGUARD_TOKEN": None})
    assert made.exit_code == 0, made.output
    tokens = {"admin": _secret(made.stdout)}
    for role, name in (("engineer", "alice"), ("approver", "bob"), ("auditor", "carol")):
        out = runner.invoke(app, ["--home", str(home), "token", "create", "--role", role, "--name", name])
        assert out.exit_code == 0, out.output
        tokens[role] = _secret(out.stdout)
    server = ServerProcess(home, free_port(), home.parent / "serve.log").start()
    try:
        yield Remote(home, server, tokens)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def catalog(remote: Remote) -> Remote:
    """A product and a site, made through the server by the engineer."""
    remote.run("product", "add", "sensor-v2", "--name", "Sensor v2")
    remote.run("site", "add", "cm-shenzhen", "--name", "CM Shenzhen")
    return remote


def test_orders_round_trip_and_the_events_name_the_token_holder(catalog: Remote) -> None:
    r = catalog
    r.run("order", "create", "--id", "po-7", "--product", "sensor-v2", "--site", "cm-shenzhen", "--quota", "10")
    r.run("order", "create", "--id", "po-8", "--product", "sensor-v2", "--site", "cm-shenzhen", "--quota", "1",
          "--valid-until", "2027-03-31")  # fmt: skip
    listed = {o["id"]: o for o in r.json("order", "list")}
    assert listed["po-7"]["quota"] == 10 and listed["po-8"]["valid_until"] == "2027-03-31T00:00:00+00:00"
    assert "po-7" in r.run("order", "list").stdout
    assert r.json("order", "show", "po-7") == json.loads(r.local("order", "show", "po-7", "--json"))
    # A raise waits for a second person; the approver approves it from their own workstation.
    pending = r.run("order", "quota", "po-7", "20", "--reason", "second batch").stdout
    change = re.search(r"Quota raise (\d+)", pending)
    assert change, pending
    r.run("order", "approve", change.group(1), who="approver")
    assert r.json("order", "show", "po-7")["quota"] == 20
    r.run("order", "suspend", "po-8")
    assert r.json("order", "show", "po-8")["state"] == "suspended"
    # The ledger names the person behind each token, not the server's local operator.
    created = [e for e in json.loads(r.local("events", "--kind", "order.created", "--json"))]
    assert created and all(e["actor"].startswith("alice (") for e in created), created
    approved = json.loads(r.local("events", "--kind", "order.quota_changed", "--json"))
    assert approved and approved[-1]["actor"].startswith("bob ("), approved


def test_a_refusal_through_the_server_is_one_line_with_its_code_and_exit_3(catalog: Remote) -> None:
    missing = catalog.run("order", "show", "po-missing", ok=False)
    assert missing.exit_code == 3 and missing.stderr.strip().endswith("[order_not_found]"), missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    as_json = catalog.run("order", "show", "po-missing", "--json", ok=False)
    assert json.loads(as_json.stdout)["error"]["code"] == "order_not_found"
    forbidden = catalog.run("order", "create", "--product", "sensor-v2", "--site", "cm-shenzhen", "--quota", "1",
                            who="auditor", ok=False)  # fmt: skip
    assert forbidden.exit_code == 3 and "[forbidden]" in forbidden.stderr, forbidden.stderr


def test_a_server_that_does_not_answer_exits_4_and_a_local_only_command_exits_2(remote: Remote) -> None:
    nowhere = f"https://127.0.0.1:{free_port()}"
    env = {**os.environ, "FABGUARD_TOKEN": remote.tokens["engineer"], "FABGUARD_SERVER": nowhere}
    done = subprocess.run([*fabguard_command(), "order", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4 and "[server_unavailable]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    for args in (["backup", "--to", "x"], ["db", "check"], ["init", "--org", "x"], ["doctor"]):
        refused = remote.run(*args, ok=False)
        assert refused.exit_code == 2 and "[needs_instance]" in refused.stderr, (args, refused.output)
    no_token = runner.invoke(app, ["--server", remote.server.url, "order", "list"], env={"FABGUARD_TOKEN": None})
    assert no_token.exit_code == 3 and "[token_required]" in no_token.stderr, no_token.output


def test_a_server_whose_certificate_the_ca_does_not_vouch_for_is_refused_not_unavailable(remote: Remote) -> None:
    env = {"FABGUARD_TOKEN": remote.tokens["engineer"], "FABGUARD_CA": None, "SSL_CERT_FILE": None}
    untrusted = runner.invoke(app, ["--server", remote.server.url, "order", "list"], env=env)
    assert untrusted.exit_code == 3 and "[certificate_untrusted]" in untrusted.stderr, untrusted.output
    assert "--ca" in untrusted.stderr and len(untrusted.stderr.strip().splitlines()) == 1


def test_a_wrong_token_is_refused_by_the_server(remote: Remote) -> None:
    remote.tokens["nobody"] = "fgt_" + "x" * 43
    refused = remote.run("order", "list", who="nobody", ok=False)
    assert refused.exit_code == 3 and "[unauthorized]" in refused.stderr, refused.output


def test_fixtures_round_trip(catalog: Remote) -> None:
    added = catalog.run("fixture", "add", "fx-line-1", "--site", "cm-shenzhen", who="admin").stdout
    assert "fgt_" not in added and re.search(r"enrolment token:\s*\S+", added), added
    assert f"--server {catalog.server.url}" in added
    assert [f["id"] for f in catalog.json("fixture", "list")] == ["fx-line-1"]
    assert catalog.run("fixture", "token", "fx-line-1", who="admin").stdout.strip()
    catalog.run("fixture", "revoke", "fx-line-1", "--reason", "stolen", who="admin")
    assert catalog.json("fixture", "list")[0]["state"] == "revoked"


def test_resuming_an_order_waits_for_an_approver_on_another_workstation(catalog: Remote) -> None:
    r = catalog
    r.run("order", "create", "--id", "po-9", "--product", "sensor-v2", "--site", "cm-shenzhen", "--quota", "3")
    r.run("order", "suspend", "po-9")
    asked = r.run("order", "resume", "po-9").stdout
    found = re.search(r"request (\d+)", asked)
    assert found, asked
    request_id = found.group(1)
    assert request_id in [str(a["id"]) for a in r.json("approval", "list", who="approver")]
    assert r.json("approval", "show", request_id)["state"] == "pending"
    own = r.run("approval", "approve", request_id, who="engineer", ok=False)
    assert own.exit_code == 3 and "[forbidden]" in own.stderr, own.output  # an engineer is no approver
    r.run("approval", "approve", request_id, who="approver")
    assert r.json("order", "show", "po-9")["state"] == "active"
    assert r.json("approval", "show", request_id)["state"] == "approved"


def test_people_and_tokens_round_trip_and_a_revoked_token_is_refused(remote: Remote) -> None:
    r = remote
    assert "dave" in r.run("person", "add", "dave", "--role", "auditor", who="admin").stdout
    made = r.run("token", "create", "--person", "dave", "--role", "auditor", "--expires-in", "30d", who="admin")
    remote.tokens["dave"] = _secret(made.stdout)
    listed = {t["id"]: t for t in r.json("token", "list", who="admin")}
    dave = r.json("person", "show", "dave", who="dave")
    (token_id,) = [t["id"] for t in dave["tokens"]]
    assert listed[token_id]["role"] == "auditor" and listed[token_id]["revoked_at"] is None
    assert [p["name"] for p in r.json("person", "list", who="dave")].count("dave") == 1
    hourly = r.run(
        "token", "create", "--person", "dave", "--role", "auditor", "--expires-in", "12h", who="admin", ok=False
    )
    assert hourly.exit_code == 3 and "[token_expiry_invalid]" in hourly.stderr, hourly.output
    r.run("token", "revoke", token_id, who="admin")
    refused = r.run("order", "list", who="dave", ok=False)
    assert refused.exit_code == 3 and "[unauthorized]" in refused.stderr, refused.output
    r.run("person", "grant", "dave", "engineer", who="admin")
    assert "engineer" in r.json("person", "show", "dave")["roles"]
    r.run("person", "revoke", "dave", "engineer", who="admin")
    assert "suspended" in r.run("person", "suspend", "dave", "--reason", "left", who="admin").stdout
    assert r.json("person", "show", "dave")["state"] == "suspended"
    not_admin = r.run("token", "list", ok=False)
    assert not_admin.exit_code == 3 and "[forbidden]" in not_admin.stderr


def test_stats_through_the_server_are_the_local_figures(catalog: Remote) -> None:
    r = catalog
    r.run("order", "create", "--id", "po-stats", "--product", "sensor-v2", "--site", "cm-shenzhen", "--quota", "4")
    through_server = r.json("stats", "order", "po-stats")
    assert through_server["burn_down"]["quota"] == 4
    local = json.loads(r.local("stats", "order", "po-stats", "--json"))
    assert {**through_server, "as_of": None} == {**local, "as_of": None}
    production = r.json("stats", "production", "--hours", "2", "--order", "po-stats")
    assert production["provisioned"] == 0 and production["scope"]["order_id"] == "po-stats"
    assert r.json("stats", "alerts", "--all", who="auditor") == []


def test_events_since_and_follow_through_the_server(catalog: Remote) -> None:
    r = catalog
    everything = r.json("events", "--limit", "1000", who="auditor")
    assert everything == json.loads(r.local("events", "--limit", "1000", "--json"))
    later = everything[-1]["at"]
    assert all(e["at"] >= later for e in r.json("events", "--since", later, who="auditor"))
    assert r.json("events", "--since", "2999-01-01", who="auditor") == []
    env = {
        **os.environ,
        "FABGUARD_TOKEN": r.tokens["auditor"],
        "FABGUARD_SERVER": r.server.url,
        "FABGUARD_CA": str(r.ca),
    }
    args = ["events", "--follow", "--json", "--after", str(everything[-1]["seq"]), "--follow-for", "20"]
    follower = subprocess.Popen([*fabguard_command(), *args], env=env, stdout=subprocess.PIPE, text=True)
    try:
        r.run("site", "add", "cm-followed", "--name", "Followed")
        assert follower.stdout is not None
        event = json.loads(follower.stdout.readline())
        assert event["kind"] == "site.created" and event["actor"].startswith("alice ("), event
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def test_ledger_checkpoint_proofs_export_and_report_through_the_server_verify_offline(
    catalog: Remote, tmp_path: Path
) -> None:
    r = catalog
    key = r.run("ledger", "key", who="auditor").stdout.strip()
    assert key == r.local("ledger", "key").strip()
    (tmp_path / "ledger.pub").write_text(key + "\n")
    note = r.run("ledger", "checkpoint").stdout
    size = int(note.splitlines()[1])
    assert size == r.json("ledger", "checkpoints", who="auditor")[0]["size"]
    assert r.json("ledger", "checkpoints", who="auditor") == json.loads(r.local("ledger", "checkpoints", "--json"))
    proof = json.loads(r.run("ledger", "prove", "--index", "0", "--size", str(size), who="auditor").stdout)
    assert proof == json.loads(r.local("ledger", "prove", "--index", "0", "--size", str(size)))
    assert json.loads(r.run("ledger", "consistency", "1", str(size), who="auditor").stdout)["second"] == size
    refused = r.run("ledger", "checkpoint", who="auditor", ok=False)
    assert refused.exit_code == 3 and "[forbidden]" in refused.stderr  # an auditor's token signs nothing
    # The export comes over the wire as one archive and verifies offline against the key the auditor kept.
    out = tmp_path / "export"
    assert "entries" in r.run("ledger", "export", str(out)).stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tree_size"] >= size and (out / "entries.jsonl").exists()
    verified = runner.invoke(app, ["audit", "verify", str(out), "--key", str(tmp_path / "ledger.pub")])
    assert verified.exit_code == 0, verified.output
    again = r.run("ledger", "export", str(out), ok=False)
    assert again.exit_code == 3 and "[export_target_exists]" in again.stderr
    # The reconciliation report, signed by the ledger key, verifies offline too.
    report = tmp_path / "report"
    assert "checkpoint size" in r.run("audit", "report", "--out", str(report), "--order", "po-7", who="auditor").stdout
    for name in ("report.json", "report.pdf"):
        checked = runner.invoke(
            app, ["audit", "verify-report", str(report / name), "--key", str(tmp_path / "ledger.pub")]
        )
        assert checked.exit_code == 0, checked.output
    assert json.loads((report / "report.json").read_text())["report"]["scope"] == {"order_id": "po-7"}
    assert (report / "report.csv").read_text().startswith("category,serial")


def test_royalties_rates_and_the_signed_statement_through_the_server(catalog: Remote, tmp_path: Path) -> None:
    r = catalog
    r.run("royalty", "rate", "set", "--amount", "0.42", "--currency", "EUR", "--product", "sensor-v2")
    rates = r.json("royalty", "rate", "list", who="auditor")
    assert [(x["product_id"], x["amount"], x["set_by"][:7]) for x in rates] == [("sensor-v2", "0.42", "alice (")]
    assert rates == json.loads(r.local("royalty", "rate", "list", "--json"))
    r.run("ledger", "checkpoint")
    (tmp_path / "ledger.pub").write_text(r.local("ledger", "key"))
    out = tmp_path / "statement"
    assert "Due:" in r.run("royalty", "statement", "--out", str(out), who="auditor").stdout
    for name in ("statement.json", "statement.csv", "statement.pdf"):
        checked = runner.invoke(app, ["audit", "verify-report", str(out / name), "--key", str(tmp_path / "ledger.pub")])
        assert checked.exit_code == 0, (name, checked.output)


def test_compliance_pack_and_handoff_through_the_server(catalog: Remote, tmp_path: Path) -> None:
    r = catalog
    (tmp_path / "ledger.pub").write_text(r.local("ledger", "key"))
    refused = r.run("compliance", "export", str(tmp_path / "no"), ok=False)
    assert refused.exit_code == 3 and "[product_compliance_incomplete]" in refused.stderr, refused.output
    r.run("product", "compliance", "sensor-v2", "--support-until", "2031-12-31", "--contact", "psirt@acme.example")
    pack = tmp_path / "pack"
    assert "Compliance pack written" in r.run("compliance", "export", str(pack)).stdout
    verified = runner.invoke(app, ["audit", "verify", str(pack), "--key", str(tmp_path / "ledger.pub")])
    assert verified.exit_code == 0, verified.output
    issuing = next(c["name"] for c in json.loads(r.local("ca", "list", "--json")) if c["role"] == "issuing")
    aws = tmp_path / "aws"
    r.run("handoff", "aws", "--ca", issuing, "--registration-code", "ab" * 32, "--out", str(aws))
    assert (aws / "README.txt").exists()
    manifest = tmp_path / "manifest"
    assert "0 devices of po-7" in r.run("handoff", "manifest", "--order", "po-7", "--out", str(manifest)).stdout
    checked = runner.invoke(
        app, ["audit", "verify-report", str(manifest / "manifest.json"), "--key", str(tmp_path / "ledger.pub")]
    )
    assert checked.exit_code == 0, checked.output
    kinds = {e["kind"]: e["actor"] for e in r.json("events", "--limit", "1000", who="auditor")}
    assert kinds["handoff.aws"].startswith("alice (") and kinds["handoff.manifest"].startswith("alice (")


def test_licences_through_the_server_refuse_an_unknown_unit_with_its_code(catalog: Remote, tmp_path: Path) -> None:
    assert catalog.json("licence", "list", "--serial", "SN-NONE", who="auditor") == []
    refused = catalog.run(
        "licence", "issue", "--serial", "SN-NONE", "--feature", "analytics", "--out", str(tmp_path / "l.json"), ok=False
    )
    assert refused.exit_code == 3 and "[unit_not_found]" in refused.stderr, refused.output
    assert not (tmp_path / "l.json").exists()


def test_units_and_witnesses_through_the_server(catalog: Remote) -> None:
    assert catalog.json("unit", "list", "--order", "po-7", who="auditor") == []
    assert catalog.json("unit", "list", who="auditor") == json.loads(catalog.local("unit", "list", "--json"))
    missing = catalog.run("unit", "revoke", "SN-NONE", "--note", "lost", who="admin", ok=False)
    assert missing.exit_code == 3 and "[unit_not_found]" in missing.stderr, missing.output
    assert catalog.json("ledger", "witnesses", who="auditor") == []
    assert catalog.json("ca", "list", who="auditor") == json.loads(catalog.local("ca", "list", "--json"))
    assert "issuing" in catalog.run("ca", "list", who="auditor").stdout
    assert catalog.json("firmware", "list", who="auditor") == [] and catalog.json("lease", "list", who="auditor") == []
    # What has no way through the API yet says so, in one line, instead of opening a local directory.
    refused = catalog.run("ca", "crl", "issuing", who="admin", ok=False)
    assert refused.exit_code == 2 and "[needs_instance]" in refused.stderr and "fabguard ca crl" in refused.stderr


def test_events_follow_on_the_instance_directory_polls_the_database(catalog: Remote) -> None:
    last = json.loads(catalog.local("events", "--limit", "1000", "--json"))[-1]["seq"]
    env = {**os.environ, "FABGUARD_TOKEN": "", "FABGUARD_SERVER": ""}
    env = {k: v for k, v in env.items() if v}
    args = ["--home", str(catalog.home), "events", "--follow", "--json", "--after", str(last), "--follow-for", "20"]
    follower = subprocess.Popen([*fabguard_command(), *args], env=env, stdout=subprocess.PIPE, text=True)
    try:
        catalog.local("site", "add", "cm-local-follow", "--name", "Local")
        assert follower.stdout is not None
        event = json.loads(follower.stdout.readline())
        assert event["kind"] == "site.created" and event["actor"].startswith("local:"), event
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def test_a_new_issuing_ca_asked_and_approved_from_two_workstations(catalog: Remote) -> None:
    asked = catalog.run("ca", "create-issuing", "issuing-remote", "--site", "cm-shenzhen", who="admin").stdout
    found = re.search(r"Request (\d+)", asked)
    assert found and "waits for a second person" in asked, asked
    assert "issuing-remote" not in [c["name"] for c in catalog.json("ca", "list")]
    catalog.run("approval", "approve", found.group(1), who="approver")
    made = {c["name"]: c for c in catalog.json("ca", "list")}
    assert made["issuing-remote"]["site_id"] == "cm-shenzhen" and made["issuing-remote"]["state"] == "active"


def test_a_firmware_release_approved_attached_and_withdrawn_through_the_server(catalog: Remote, tmp_path: Path) -> None:
    image = tmp_path / "app.bin"
    image.write_bytes(bytes(range(256)) * 64)
    uploaded = catalog.local("firmware", "upload", str(image), "--product", "sensor-v2", "--version", "1.0.0")
    release = uploaded.split("Release ")[1].split(":")[0].strip()
    engineer = catalog.run("firmware", "approve", release, ok=False)
    assert engineer.exit_code == 3 and "[forbidden]" in engineer.stderr, engineer.output
    assert "approved by bob (" in catalog.run("firmware", "approve", release, who="approver").stdout
    catalog.run("firmware", "attach", release, "--order", "po-7")
    catalog.run("firmware", "withdraw", release, "--reason", "bad build")
    (listed,) = [r for r in catalog.json("firmware", "list", who="auditor") if r["id"] == release]
    assert listed["state"] == "withdrawn" and listed["orders"] == ["po-7"], listed
