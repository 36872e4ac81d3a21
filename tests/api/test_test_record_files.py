"""A line PC posts its station's own report (ATML, TestStand XML, JUnit XML, CSV) as it is, with curl and
its fixture certificate: the server parses it into the one test-record model, stores each UUT's record as
an OpenHTF-shaped one, and a malformed file is refused with its code and nothing stored."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from fabguard.domain.testrecord import parse_openhtf_record
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.provisioning import testrecords
from fabguard.store.models import Event, TestRecordRow
from tests.support import World

DATA = Path(__file__).resolve().parents[1] / "data" / "testformats"
ATML_PASSED = DATA / "atml" / "teststand_atml500_passed.xml"
ATML_FAILED = DATA / "atml" / "teststand_atml601_failed.xml"
CSV_RUN = DATA / "csv" / "station_run.csv"
TS_XML = DATA / "teststand_xml" / "TsWithoutWats.xml"


def curl(
    world: World,
    fixture_id: str,
    body: bytes,
    content_type: str,
    query: str = "",
    headers: tuple[str, ...] = (),
) -> tuple[int, dict[str, object]]:
    """POST /api/v1/test-records with curl and the fixture's certificate: (status, JSON answer)."""
    creds = world.tmp / "fixtures" / fixture_id
    args = ["curl", "-sS", "--cacert", str(world.root_ca), "--cert", str(creds / "fixture.pem")]
    args += ["--key", str(creds / "fixture.key"), "-H", f"Content-Type: {content_type}", "--data-binary", "@-"]
    for header in headers:
        args += ["-H", header]
    args += ["-o", "-", "-w", "\n%{http_code}", f"{world.url}/api/v1/test-records{query}"]
    result = subprocess.run(args, input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    payload, _, status = result.stdout.rpartition(b"\n")
    return int(status), json.loads(payload)


def stored_count(world: World) -> int:
    with world.inst.db.read() as s:
        return s.execute(select(func.count()).select_from(TestRecordRow)).scalar_one()


def test_curl_posts_an_atml_report_and_its_passed_unit_may_be_provisioned(world: World) -> None:
    order = world.order(quota=2)
    fx = world.fixture("fx-1")

    status, body = curl(world, "fx-1", ATML_PASSED.read_bytes(), "application/xml")

    assert status == 201, body
    (record,) = body["records"]  # type: ignore[misc]
    assert (record["serial"], record["outcome"]) == ("SN-ATML-0001", "PASS")
    (listed,) = testrecords.records_for_serial(world.inst, "SN-ATML-0001")
    assert (listed["station_id"], listed["declared_station_id"]) == ("fx-1", "LINE2-FCT-07")
    assert listed["measurements"] > 0
    # Stored in OpenHTF's shape: it reads back through the one OpenHTF parser.
    with world.inst.db.read() as s:
        raw = s.execute(select(TestRecordRow.record_json)).scalar_one()
    assert parse_openhtf_record(json.loads(raw)).serial.value == "SN-ATML-0001"
    # The test gate reads it like any record.
    device = SimulatedDevice("SN-ATML-0001")
    assert fx.provision(order, device.serial, device.csr_pem()).serial == "SN-ATML-0001"


def test_a_failed_atml_run_is_stored_and_keeps_the_gate_shut(world: World) -> None:
    order = world.order(quota=2)
    fx = world.fixture("fx-1")
    status, body = curl(world, "fx-1", ATML_FAILED.read_bytes(), "text/xml", "?format=atml")
    assert status == 201 and body["records"][0]["outcome"] == "FAIL"  # type: ignore[index]
    device = SimulatedDevice("SN-ATML-0002")
    try:
        fx.provision(order, device.serial, device.csr_pem())
    except Exception as exc:
        assert getattr(exc, "code", None) == "test_failed"
    else:
        raise AssertionError("a unit whose last run failed was provisioned")


def test_csv_is_taken_as_text_csv(world: World) -> None:
    world.fixture("fx-1")
    status, body = curl(world, "fx-1", CSV_RUN.read_bytes(), "text/csv", "?format=csv")
    assert status == 201, body
    assert [r["serial"] for r in body["records"]] == ["SN-CSV-0001"]  # type: ignore[attr-defined]


def test_the_stations_time_zone_places_a_teststand_report_written_in_local_time(world: World) -> None:
    world.fixture("fx-1")
    data = TS_XML.read_bytes()
    status, utc = curl(world, "fx-1", data, "application/xml")
    assert status == 201, utc
    status, berlin = curl(world, "fx-1", data, "application/xml", "?format=teststand-xml&tz=Europe/Berlin")
    assert status == 201, berlin
    serial = utc["records"][0]["serial"]  # type: ignore[index]
    starts = [r["start_time_millis"] for r in testrecords.records_for_serial(world.inst, serial)]
    assert starts[0] - starts[1] in (3_600_000, 7_200_000)  # CET or CEST: an hour or two before UTC's reading
    status, bad = curl(world, "fx-1", data, "application/xml", "?tz=Mars/Olympus")
    assert status == 422 and bad["error"]["code"] == "time_zone_invalid"  # type: ignore[index]


def test_a_malformed_file_is_refused_with_its_code_and_nothing_is_stored(world: World) -> None:
    world.fixture("fx-1")
    broken = ATML_PASSED.read_bytes().replace(b"</tr:ResultSet>", b"", 1)
    status, body = curl(world, "fx-1", broken, "application/xml")
    assert status == 422 and body["error"]["code"] == "test_record_format_invalid"  # type: ignore[index]
    assert "line" in body["error"]["message"]  # type: ignore[index]

    status, body = curl(world, "fx-1", ATML_PASSED.read_bytes(), "application/xml", "?format=junit")
    assert status == 422 and body["error"]["code"] == "test_record_format_unknown"  # type: ignore[index]

    dtd = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><testsuite>&e;</testsuite>'
    status, body = curl(world, "fx-1", dtd, "application/xml")
    assert status == 422 and body["error"]["code"] == "test_record_format_invalid"  # type: ignore[index]

    status, body = curl(world, "fx-1", ATML_PASSED.read_bytes(), "application/xml", "?format=pdf")
    assert status == 422 and body["error"]["code"] == "invalid_format"  # type: ignore[index]

    status, body = curl(world, "fx-1", b"serial\nSN-1\n", "text/plain")
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"  # type: ignore[index]

    assert stored_count(world) == 0
    with world.inst.db.read() as s:
        kinds = s.execute(select(Event.kind).where(Event.kind.like("test.%"))).scalars().all()
    assert kinds == ["test.refused"] * 3  # the three files that reached the parser


def test_a_resent_file_with_the_same_key_is_stored_once(world: World) -> None:
    world.fixture("fx-1")
    data = CSV_RUN.read_bytes()
    key = ("Idempotency-Key: 6b0f4a52-file-upload",)
    first_status, first = curl(world, "fx-1", data, "text/csv", headers=key)
    again_status, again = curl(world, "fx-1", data, "text/csv", headers=key)
    assert first_status == again_status == 201 and first == again
    assert stored_count(world) == 1
    status, body = curl(world, "fx-1", data.replace(b"3.31", b"3.32"), "text/csv", headers=key)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"  # type: ignore[index]


def test_json_records_are_taken_as_before(world: World) -> None:
    world.fixture("fx-1")
    status, body = curl(world, "fx-1", b"[1, 2]", "application/json")
    assert status == 422 and body["error"]["code"] == "invalid_request"  # type: ignore[index]
    status, body = curl(world, "fx-1", b"{not json", "application/json")
    assert status == 400 and body["error"]["code"] == "malformed_json"  # type: ignore[index]
