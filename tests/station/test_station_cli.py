"""``fabguard-station`` as a test executive runs it: a process per step, branching on its exit code
(0 done, 2 usage, 3 refused with the code printed, 4 server unavailable with the upload spooled), ``--json``
on every command, and nothing prompting without a terminal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from fabguard.fixture.device import SimulatedDevice
from fabguard.service.provisioning import testrecords
from tests.station.conftest import DATA, Station
from tests.support import World

ATML = DATA / "atml" / "teststand_atml500_passed.xml"
CSV = DATA / "csv" / "station_run.csv"


def test_enroll_whoami_upload_and_provision_exit_0(world: World, station: Station, tmp_path: Path) -> None:
    order = world.order(quota=2)
    enrolled = station.enroll(world, "fx-line1")
    assert enrolled.code == 0, enrolled.stderr
    assert enrolled.json["fixture_id"] == "fx-line1" and enrolled.json["exit"] == 0
    me = station.run("whoami", "--json")
    assert me.code == 0 and (me.json["fixture_id"], me.json["site_id"]) == ("fx-line1", "cm-a")
    assert station.run("whoami").stdout.strip() == "fixture fx-line1 at site cm-a"

    up = station.run("--json", "upload", ATML, CSV)
    assert up.code == 0, up.stdout + up.stderr
    stored = [r["records"][0]["serial"] for r in up.json["files"]]
    assert stored == ["SN-ATML-0001", "SN-CSV-0001"] and all(f["status"] == "stored" for f in up.json["files"])
    assert station.run("spool", "status", "--json").json["pending"] == []

    device = SimulatedDevice("SN-ATML-0001")
    csr = tmp_path / "unit.csr"
    csr.write_text(device.csr_pem())
    out = tmp_path / "certs"
    done = station.run("provision", "--order", order, "--serial", device.serial, "--csr", csr, "--out", out, "--json")
    assert done.code == 0, done.stdout + done.stderr
    cert = x509.load_pem_x509_certificate(Path(done.json["certificate"]).read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN-ATML-0001"
    assert cert.public_key() == device.key.public_key()
    again = station.run("provision", "--order", order, "--serial", device.serial, "--csr", csr, "--out", out)
    assert again.code == 0 and "issued before" in again.stdout


def test_a_refusal_exits_3_with_its_code_printed_and_in_json(world: World, station: Station, tmp_path: Path) -> None:
    order = world.order(quota=2)
    assert station.enroll(world, "fx-line1").code == 0
    broken = tmp_path / "broken.xml"
    broken.write_bytes(ATML.read_bytes().replace(b"</tr:ResultSet>", b"", 1))

    plain = station.run("upload", broken)
    assert plain.code == 3
    assert "test_record_format_invalid" in plain.stdout and "line 254" in plain.stdout
    as_json = station.run("upload", broken, "--json")
    assert as_json.code == 3 and as_json.json["error"]["code"] == "test_record_format_invalid"
    assert as_json.json["files"][0]["status"] == "rejected"
    status = station.run("spool", "status", "--json").json
    assert status["pending"] == [] and len(status["rejected"]) == 2  # kept aside, never sent again

    csr = tmp_path / "untested.csr"
    csr.write_text(SimulatedDevice("SN-NEVER-TESTED").csr_pem())
    refused = station.run(
        "provision", "--order", order, "--serial", "SN-NEVER-TESTED", "--csr", csr, "--out", tmp_path, "--json"
    )
    assert refused.code == 3 and refused.json["error"]["code"] == "test_missing"
    assert testrecords.records_for_serial(world.inst, "SN-ATML-0001") == []

    fetched = station.run(
        "firmware", "fetch", "--release", "rel-x", "--order", order, "--serial", "SN-1", "--out", tmp_path / "fw"
    )
    assert fetched.code == 3 and fetched.stdout.split(":")[0] in {"release_not_found", "unit_not_found", "not_found"}


def test_a_dead_server_exits_4_the_spool_keeps_the_file_and_flush_stores_it_once(
    world: World, station: Station
) -> None:
    assert station.enroll(world, "fx-line1").code == 0
    info = station.dir / "fixture.json"
    real = json.loads(info.read_text())
    info.write_text(json.dumps({**real, "server": "https://127.0.0.1:9"}))  # nothing listens there

    down = station.run("upload", CSV, "--format", "csv", "--json")
    assert down.code == 4, down.stdout + down.stderr
    assert down.json["files"][0]["status"] == "spooled" and down.json["error"]["code"] == "server_unavailable"
    pending = station.run("spool", "status", "--json").json["pending"]
    assert [p["format"] for p in pending] == ["csv"]
    assert station.run("spool", "flush").code == 4

    # A crash after the server stored it but before the spool forgot it: the same key, stored once.
    spool = station.dir / "spool"
    saved = {p.name: p.read_bytes() for p in spool.iterdir() if p.is_file()}
    info.write_text(json.dumps(real))
    flushed = station.run("spool", "flush", "--json")
    assert flushed.code == 0 and flushed.json["files"][0]["status"] == "stored"
    for name, data in saved.items():
        (spool / name).write_bytes(data)
    resent = station.run("spool", "flush", "--json")
    assert resent.code == 0 and resent.json["files"][0]["records"] == flushed.json["files"][0]["records"]
    assert len(testrecords.records_for_serial(world.inst, "SN-CSV-0001")) == 1
    assert station.run("spool", "status", "--json").json["pending"] == []


def test_usage_errors_exit_2_and_nothing_prompts_without_a_terminal(
    world: World, station: Station, tmp_path: Path
) -> None:
    no_token = station.run("enroll", "--server", world.url, "--ca", world.root_ca, timeout=20)
    assert no_token.code == 2 and "FABGUARD_ENROLLMENT_TOKEN" in no_token.stderr
    no_creds = station.run("whoami", "--json")
    assert no_creds.code == 2 and "enroll" in no_creds.json["error"]["message"]
    assert station.enroll(world, "fx-line1").code == 0
    missing = station.run("upload", tmp_path / "nothing.xml")
    assert missing.code == 2 and "cannot read" in missing.stderr
    assert station.run("upload", CSV, "--format", "pdf").code == 2
    both = station.run(
        "provision",
        "--order",
        "po",
        "--serial",
        "SN-1",
        "--csr",
        CSV,
        "--pkcs11-module",
        "/x.so",
        "--token",
        "t",
        "--out",
        tmp_path,
    )
    assert both.code == 2 and "exactly one" in both.stderr
    no_pin = station.run(
        "provision",
        "--order",
        "po",
        "--serial",
        "SN-1",
        "--pkcs11-module",
        "/x.so",
        "--token",
        "t",
        "--out",
        tmp_path,
        timeout=20,
    )
    assert no_pin.code == 2 and "FABGUARD_PKCS11_PIN" in no_pin.stderr
    assert station.run("--version").code == 0 and station.run("bogus").code == 2
    assert station.run("spool", "status").code == 0  # an empty spool is not an error
    shutil.rmtree(station.dir / "spool")
