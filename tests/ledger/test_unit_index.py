"""The verifier's on-disk index of units replays the entries exactly as the export's writer does in memory
(``IssuedCertificates``): the same current certificate per unit, the same file names (clashes included), the
same owner of every certificate ever issued, the same superseded ones."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fabguard.ledger.audit_failure import AuditFailure
from fabguard.ledger.entry import canonical_json
from fabguard.ledger.export_files import IssuedCertificates, file_map
from fabguard.ledger.unit_index import UnitIndex
from tests.hypothesis_profiles import examples

# Serials that clash ignoring case, need percent-encoding, or repeat across orders; a few certificates reused.
SERIALS = st.sampled_from(["SN-1", "sn-1", "SN-2", "a/b", ".x", "%41", "SN-1 "])
ORDERS = st.sampled_from(["po-1", "po-2"])
KINDS = st.sampled_from(["unit.provisioned", "unit.reenrolled", "test.recorded"])
CERTS = st.integers(min_value=0, max_value=12)


def _line(kind: str, order_id: str, serial: str, cert: int) -> bytes:
    sha = hashlib.sha256(b"%d" % cert).hexdigest()
    return canonical_json({"kind": kind, "order_id": order_id, "serial": serial, "detail": {"cert_sha256": sha}})


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.tuples(KINDS, ORDERS, SERIALS, CERTS), max_size=25))
@example([("unit.provisioned", "po-1", "SN-1", 0), ("unit.provisioned", "po-2", "SN-1", 0)])  # one name for two
@example([("unit.provisioned", "po-1", "SN-1", 0), ("unit.provisioned", "po-1", "sn-1", 1)])  # a clash of case
@example([("unit.reenrolled", "po-1", "SN-1", 1), ("unit.provisioned", "po-1", "SN-1", 0)])  # renewed before
def test_the_index_names_the_same_files_and_owners_as_the_writer(entries: list[tuple[str, str, str, int]]) -> None:
    memory = IssuedCertificates()
    with UnitIndex() as disk:
        for i, entry in enumerate(entries):
            memory.see(i, _line(*entry))
            disk.see(i, _line(*entry))
        files = memory.files()
        assert disk.file_count() == len(files)
        for name, unit in files.items():
            assert disk.file_of(name) == unit
            assert disk.home(unit) == name
        for sha, unit in memory.recorded.items():
            assert disk.recorded(sha) == unit
            assert disk.current(unit) == memory.current(sha)
        for name, unit in file_map(files).items():
            disk.map_file(name, unit)
        assert disk.map_matches()
        if files:  # one unit mapped to another serial: no longer the entries' map
            name = next(iter(files))
            disk.map_file(name, {"serial": "SN-OTHER", "order_id": files[name].order_id})
            assert not disk.map_matches()


def test_a_certificate_no_entry_issued_has_no_owner() -> None:
    with UnitIndex() as disk:
        disk.see(0, _line("unit.provisioned", "po-1", "SN-1", 1))
        assert disk.recorded(hashlib.sha256(b"2").hexdigest()) is None
        assert disk.file_of("certs/SN-2.pem") is None
        assert disk.file_of("certs/SN-1.pem") is not None


def test_an_entry_whose_serial_is_not_unicode_text_fails_the_audit() -> None:
    """A JSON escape can put an unpaired surrogate in a serial; no server issues to one, no file can name it."""
    with UnitIndex() as disk, pytest.raises(AuditFailure, match="entry 3: its order or serial is not Unicode text"):
        disk.see(3, _line("unit.provisioned", "po-1", "SN-\ud800", 1))
