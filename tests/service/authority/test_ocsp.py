"""The OCSP responder's service on both engines: statuses from the database, responders made once and renewed
with a new key before they expire (the expired one's key deleted), responses kept only while they are true."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import func, select

from fabguard.domain.values import FixtureId, SiteId
from fabguard.service.authority import ocsp as responder_service
from fabguard.service.catalog import fixtures, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.models import OcspResponder
from tests.support import enrolled_fixture_pem


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def timed(any_instance: Instance) -> Iterator[tuple[Instance, Clock]]:
    """The instance reopened with a clock the test moves."""
    clock = Clock(any_instance.clock())
    inst = Instance.open(any_instance.home, clock=clock, migrate=False)
    yield inst, clock
    inst.close()


def ask(inst: Instance, cert: x509.Certificate, issuer: str, nonce: bytes | None = None) -> ocsp.OCSPResponse:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, inst.cas.certificate(issuer), hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    answer = responder_service.respond(inst, builder.build().public_bytes(serialization.Encoding.DER))
    return ocsp.load_der_ocsp_response(answer.der)


def responders(inst: Instance) -> list[OcspResponder]:
    with inst.db.read() as s:
        return list(s.execute(select(OcspResponder).order_by(OcspResponder.id)).scalars())


def test_a_fixture_certificate_is_good_then_revoked_at_once(timed: tuple[Instance, Clock]) -> None:
    inst, _ = timed
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    cert = x509.load_pem_x509_certificate(enrolled_fixture_pem(inst, "fx-1").encode())
    assert ask(inst, cert, "station").certificate_status == ocsp.OCSPCertStatus.GOOD
    fixtures.revoke_fixture(inst, FixtureId("fx-1"), reason="stolen", actor="test")
    answer = ask(inst, cert, "station")
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.cessation_of_operation


def test_an_answer_without_a_nonce_is_kept_and_one_with_a_nonce_is_signed_afresh(
    timed: tuple[Instance, Clock],
) -> None:
    inst, clock = timed
    issuing = inst.cas.certificate("issuing")
    first = ask(inst, issuing, "root")
    assert first.certificate_status == ocsp.OCSPCertStatus.GOOD
    clock.now += timedelta(minutes=10)
    assert ask(inst, issuing, "root").this_update_utc == first.this_update_utc  # kept
    assert ask(inst, issuing, "root", nonce=b"fresh").this_update_utc > first.this_update_utc
    clock.now += responder_service.RESPONSE_VALIDITY / 2  # less than half its validity left: signed again
    assert ask(inst, issuing, "root").this_update_utc > first.this_update_utc


def test_the_responder_is_renewed_with_a_new_key_before_it_expires_and_expired_keys_go(
    timed: tuple[Instance, Clock],
) -> None:
    inst, clock = timed
    issuing = inst.cas.certificate("issuing")
    ask(inst, issuing, "root")
    (first,) = responders(inst)
    assert first.ca == "root"
    clock.now = first.not_after - responder_service.RESPONDER_RENEWAL + timedelta(minutes=1)
    answer = ask(inst, issuing, "root")
    second = responders(inst)[-1]
    assert second.id != first.id and second.key_ref != first.key_ref
    assert answer.certificates[0].serial_number == int(second.cert_serial, 16)
    assert answer.next_update_utc is not None and answer.next_update_utc <= second.not_after
    assert inst.keys.path(first.key_ref.removeprefix("file:")).exists()  # still valid: kept for now
    clock.now = second.not_after - responder_service.RESPONDER_RENEWAL + timedelta(minutes=1)
    ask(inst, issuing, "root")
    kept = [r.id for r in responders(inst)]
    assert len(kept) == 2 and kept[0] == second.id  # the first had expired: its row and key are gone
    assert not inst.keys.path(first.key_ref.removeprefix("file:")).exists()


def test_processes_making_the_first_responder_at_once_make_one(timed: tuple[Instance, Clock]) -> None:
    inst, _ = timed
    other = Instance.open(inst.home, migrate=False)
    made: list[str] = []
    start = threading.Barrier(4)

    def make(i: Instance) -> None:
        start.wait()
        made.append(responder_service.responder(i, "issuing").certificate.serial_number.to_bytes(20).hex())

    try:
        threads = [threading.Thread(target=make, args=(i,)) for i in (inst, other, inst, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        other.close()
    assert len(made) == 4 and len(set(made)) == 1
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(OcspResponder)).scalar_one() == 1
