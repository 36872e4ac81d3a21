"""Hostile and broken input: always a 4xx with a machine-readable code, never a 500, and nothing consumed.

One server serves the whole module (the cases only read or are refused, and each compares the state
right before and right after itself), so the many cases stay fast.
"""

from __future__ import annotations

import base64
import json
import random
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import AttributeOID, NameOID
from sqlalchemy import func, select

from fabguard.fixture.client import FixtureClient
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.access import tokens
from fabguard.service.catalog import orders
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from fabguard.store.eventlog import event_count
from fabguard.store.models import Fixture, Order, Product, TestRecordRow, Unit
from tests.support import World, new_instance, tested_device

PROVISION = "/api/v1/units/provision"
BATCH = "/api/v1/units/provision-batch"
RECORDS = "/api/v1/test-records"
SERIAL = "SN-BAD-1"  # has a passing test record, so only the broken part of a request can stop it
CODE_RE = re.compile(r"[a-z][a-z0-9_]{1,39}")


# ----------------------------------------------------------------------------- the shared world


@dataclass
class Ctx:
    world: World
    fx: FixtureClient
    http: httpx.Client  # the fixture's mutual-TLS session
    admin: httpx.Client
    order: str

    @property
    def inst(self) -> Instance:
        return self.world.inst


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    tmp = tmp_path_factory.mktemp("bad-input")
    inst = new_instance(tmp / "home")
    world = World.start(inst, tmp)
    try:
        fx = world.fixture("fx-1")
        order = world.order(quota=100, order_id="po-bad")
        tested_device(fx, SERIAL)
        tls = ssl.create_default_context(cafile=str(fx.credentials.ca))
        tls.load_cert_chain(str(fx.credentials.cert), str(fx.credentials.key))
        with httpx.Client(base_url=world.url, verify=tls, timeout=60) as http, world.admin() as admin:
            yield Ctx(world, fx, http, admin, order)
    finally:
        world.stop()
        inst.close()


@dataclass(frozen=True)
class Snapshot:
    seq: int
    used: dict[str, int]
    units: int
    test_records: int
    orders: int
    products: int
    enrolled: int


def snapshot(inst: Instance) -> Snapshot:
    with inst.db.read() as s:

        def count(model: Any, *where: Any) -> int:
            return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())

        return Snapshot(
            seq=event_count(s),
            used={o.id: o.used for o in s.execute(select(Order)).scalars()},
            units=count(Unit),
            test_records=count(TestRecordRow),
            orders=count(Order),
            products=count(Product),
            enrolled=count(Fixture, Fixture.cert_fingerprint.is_not(None)),
        )


def assert_rejected(
    inst: Instance,
    response: httpx.Response,
    before: Snapshot,
    *,
    status: int | None = None,
    code: str | set[str] | None = None,
) -> str:
    """A 4xx with ``{"error": {"code", "message"}}``, and nothing consumed or created. Returns the code."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if status is not None:
        assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    got = body["error"]["code"]
    assert isinstance(got, str) and CODE_RE.fullmatch(got), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip(), body
    if isinstance(code, str):
        assert got == code, body
    elif code is not None:
        assert got in code, body
    after = snapshot(inst)
    assert after.used == before.used, "quota was consumed"
    assert after.units == before.units, "a unit was created"
    assert after.test_records == before.test_records, "a test record was stored"
    assert (after.orders, after.products, after.enrolled) == (before.orders, before.products, before.enrolled)
    issued = events.list_events(inst, after=before.seq, kind="unit.provisioned")
    assert issued == []
    return str(got)


def post_json(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    """POST ``body`` as ASCII JSON (so lone surrogates and control characters travel as escapes)."""
    return http.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


# ----------------------------------------------------------------------------- CSR makers


def _pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _subject(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def make_csr(
    key: Any = None,
    *,
    subject: x509.Name | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
    attributes: list[tuple[x509.ObjectIdentifier, bytes]] | None = None,
) -> x509.CertificateSigningRequest:
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject if subject is not None else _subject((NameOID.SERIAL_NUMBER, SERIAL))
    )
    for ext, critical in extensions or []:
        builder = builder.add_extension(ext, critical)
    for oid, value in attributes or []:
        builder = builder.add_attribute(oid, value)
    algorithm: hashes.HashAlgorithm | None = (
        None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    )
    return builder.sign(key, algorithm)


def good_csr() -> str:
    return _pem(make_csr())


# Minimal DER surgery, to build CSRs that no honest library would make but an attacker can send.


def _read_tlv(b: bytes, i: int) -> tuple[int, bytes, int]:
    tag, length, j = b[i], b[i + 1], i + 2
    if length & 0x80:
        n = length & 0x7F
        length, j = int.from_bytes(b[j : j + n], "big"), j + n
    return tag, b[j : j + length], j + length


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _der_map(der: bytes, fn: Callable[[int, bytes], tuple[int, bytes]]) -> bytes:
    """Rebuild ``der`` with ``fn`` applied to every primitive element (lengths fixed up on the way out)."""
    tag, content, end = _read_tlv(der, 0)
    assert end == len(der)
    if tag & 0x20:
        parts, i = [], 0
        while i < len(content):
            _, _, e = _read_tlv(content, i)
            parts.append(_der_map(content[i:e], fn))
            i = e
        return _tlv(tag, b"".join(parts))
    return _tlv(*fn(tag, content))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def doctored_csr(fn: Callable[[int, bytes], tuple[int, bytes]], *, subject: x509.Name | None = None) -> str:
    """A P-256 CSR whose request info is rewritten by ``fn``, then properly re-signed by the device key."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = make_csr(key, subject=subject).public_bytes(serialization.Encoding.DER)
    _, outer, _ = _read_tlv(der, 0)
    _, _, tbs_end = _read_tlv(outer, 0)
    _, _, alg_end = _read_tlv(outer, tbs_end)
    tbs = _der_map(outer[:tbs_end], fn)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    csr = _tlv(0x30, tbs + outer[tbs_end:alg_end] + _tlv(0x03, b"\x00" + signature))
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + _b64_lines(csr) + "-----END CERTIFICATE REQUEST-----\n"


def _b64_lines(der: bytes) -> str:
    text = base64.b64encode(der).decode()
    return "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))


def _swap(old: bytes, new_tag: int | None, new: bytes) -> Callable[[int, bytes], tuple[int, bytes]]:
    def fn(tag: int, content: bytes) -> tuple[int, bytes]:
        if content == old:
            return (new_tag if new_tag is not None else tag), new
        return tag, content

    return fn


def unknown_key_algorithm_csr() -> str:
    # id-ecPublicKey → GOST R 34.10-2012 (256 bit): a real algorithm the server cannot read.
    return doctored_csr(_swap(_oid("1.2.840.10045.2.1"), None, _oid("1.2.643.7.1.1.1.1")))


def unknown_named_curve_csr() -> str:
    # prime256v1 → SM2's curve: an EC key on a curve the crypto library does not know.
    return doctored_csr(_swap(_oid("1.2.840.10045.3.1.7"), None, _oid("1.2.156.10197.1.301")))


def point_off_the_curve_csr() -> str:
    def fn(tag: int, content: bytes) -> tuple[int, bytes]:
        if tag == 0x03 and len(content) == 66 and content[1] == 0x04:  # the uncompressed P-256 point
            return tag, content[:-1] + bytes([content[-1] ^ 0x01])
        return tag, content

    return doctored_csr(fn)


def undecodable_serial_csr() -> str:
    # serialNumber as a UTF8String that is not UTF-8.
    return doctored_csr(_swap(SERIAL.encode(), 0x0C, b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"))


def undecodable_common_name_csr() -> str:
    subject = _subject((NameOID.SERIAL_NUMBER, SERIAL), (NameOID.COMMON_NAME, "CNCNCNCN"))
    return doctored_csr(_swap(b"CNCNCNCN", 0x0C, b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xff"), subject=subject)


def unsigned_csr() -> str:
    """Another key's SubjectPublicKeyInfo spliced into a signed CSR: no proof of possession."""
    signer, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    der = make_csr(signer).public_bytes(serialization.Encoding.DER)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    a = signer.public_key().public_bytes(serialization.Encoding.DER, spki)
    b = other.public_key().public_bytes(serialization.Encoding.DER, spki)
    return _pem(x509.load_der_x509_csr(der.replace(a, b)))


def truncated_pem() -> str:
    pem = good_csr()
    return pem[: len(pem) // 2]


def truncated_body_pem() -> str:
    lines = good_csr().splitlines()
    return "\n".join([lines[0], *lines[1:3], lines[-1]]) + "\n"


def oversized_real_csr() -> str:
    names: list[x509.GeneralName] = [x509.DNSName(f"host-{i:04d}.devices.example.com") for i in range(400)]
    pem = _pem(make_csr(extensions=[(x509.SubjectAlternativeName(names), False)]))
    assert len(pem) > 8 * 1024
    return pem


def root_certificate_pem(c: Ctx) -> str:
    return c.inst.cas.cert_path("root").read_text()


def private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _key_csr(key: Any) -> Callable[[], str]:
    return lambda: _pem(make_csr(key() if callable(key) else key))


def _unknown_critical_extension() -> x509.ExtensionType:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")


CSR_CASES: dict[str, tuple[Callable[[], str], str | set[str]]] = {
    # garbage, truncated, oversized, the wrong kind of PEM
    "empty": (lambda: "", "csr_invalid"),
    "prose": (lambda: "please give me a certificate", "csr_invalid"),
    "der-looking-junk": (lambda: "0\x82\x01\x00" + "A" * 200, "csr_invalid"),
    "base64-of-random-bytes": (lambda: _b64_lines(random.Random(1).randbytes(300)), "csr_invalid"),
    "nul-bytes": (lambda: "\x00" * 200, "csr_invalid"),
    "lone-surrogates": (lambda: "\ud800\udfff" * 20, "csr_invalid"),
    "truncated-pem": (truncated_pem, "csr_invalid"),
    "pem-with-truncated-body": (truncated_body_pem, "csr_invalid"),
    "oversized-real-csr": (oversized_real_csr, "csr_invalid"),
    "oversized-garbage-100k": (lambda: "A" * 100_000, "csr_invalid"),
    "private-key-instead": (private_key_pem, "csr_invalid"),
    "signature-does-not-verify": (unsigned_csr, "csr_invalid"),
    # keys the product does not allow, or nobody allows
    "ec-secp256k1": (_key_csr(lambda: ec.generate_private_key(ec.SECP256K1())), "key_type_not_allowed"),
    "ec-p521": (_key_csr(lambda: ec.generate_private_key(ec.SECP521R1())), "key_type_not_allowed"),
    "ec-p384-not-in-profile": (_key_csr(lambda: ec.generate_private_key(ec.SECP384R1())), "key_type_not_allowed"),
    "ec-brainpool-p256": (_key_csr(lambda: ec.generate_private_key(ec.BrainpoolP256R1())), "key_type_not_allowed"),
    "ed25519-not-in-profile": (_key_csr(ed25519.Ed25519PrivateKey.generate), "key_type_not_allowed"),
    "ed448": (_key_csr(ed448.Ed448PrivateKey.generate), "key_type_not_allowed"),
    "rsa-1024": (_key_csr(lambda: rsa.generate_private_key(65537, 1024)), "key_type_not_allowed"),
    "rsa-2048": (_key_csr(lambda: rsa.generate_private_key(65537, 2048)), "key_type_not_allowed"),
    "unknown-key-algorithm": (unknown_key_algorithm_csr, {"key_type_not_allowed", "csr_invalid"}),
    "unknown-named-curve": (unknown_named_curve_csr, {"key_type_not_allowed", "csr_invalid"}),
    "ec-point-off-the-curve": (point_off_the_curve_csr, {"key_type_not_allowed", "csr_invalid"}),
    # asking for what the profile decides
    "san-dns": (
        lambda: _pem(make_csr(extensions=[(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False)])),
        "csr_invalid",
    ),
    "san-ip-and-uri": (
        lambda: _pem(
            make_csr(
                extensions=[
                    (
                        x509.SubjectAlternativeName(
                            [x509.UniformResourceIdentifier("urn:dev:x"), x509.RFC822Name("a@example.com")]
                        ),
                        False,
                    )
                ]
            )
        ),
        "csr_invalid",
    ),
    "basic-constraints-ca": (
        lambda: _pem(make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])),
        "csr_invalid",
    ),
    "extended-key-usage-server": (
        lambda: _pem(make_csr(extensions=[(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)])),
        "csr_invalid",
    ),
    "unknown-critical-extension": (
        lambda: _pem(make_csr(extensions=[(_unknown_critical_extension(), True)])),
        "csr_invalid",
    ),
    "unstructured-name-attribute": (
        lambda: _pem(make_csr(attributes=[(AttributeOID.UNSTRUCTURED_NAME, b"evil")])),
        "csr_invalid",
    ),
    # subjects with more (or less) than the serial
    "subject-extra-organization": (
        lambda: _pem(make_csr(subject=_subject((NameOID.SERIAL_NUMBER, SERIAL), (NameOID.ORGANIZATION_NAME, "Evil")))),
        "csr_invalid",
    ),
    "subject-other-common-name": (
        lambda: _pem(make_csr(subject=_subject((NameOID.SERIAL_NUMBER, SERIAL), (NameOID.COMMON_NAME, "admin")))),
        "csr_invalid",
    ),
    "subject-email": (
        lambda: _pem(
            make_csr(subject=_subject((NameOID.SERIAL_NUMBER, SERIAL), (NameOID.EMAIL_ADDRESS, "a@b.example")))
        ),
        "csr_invalid",
    ),
    "subject-two-serials": (
        lambda: _pem(make_csr(subject=_subject((NameOID.SERIAL_NUMBER, SERIAL), (NameOID.SERIAL_NUMBER, "SN-OTHER")))),
        {"serial_mismatch", "csr_invalid"},
    ),
    "subject-without-serial": (
        lambda: _pem(make_csr(subject=_subject((NameOID.COMMON_NAME, SERIAL)))),
        {"serial_mismatch", "csr_invalid"},
    ),
    "subject-empty": (lambda: _pem(make_csr(subject=x509.Name([]))), {"serial_mismatch", "csr_invalid"}),
    "subject-multivalued-rdn": (
        lambda: _pem(
            make_csr(
                subject=x509.Name(
                    [
                        x509.RelativeDistinguishedName(
                            [
                                x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
                                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil"),
                            ]
                        )
                    ]
                )
            )
        ),
        "csr_invalid",
    ),
    "subject-serial-not-utf8": (undecodable_serial_csr, "csr_invalid"),
    "subject-common-name-not-utf8": (undecodable_common_name_csr, "csr_invalid"),
}


@pytest.mark.parametrize("case", list(CSR_CASES))
def test_broken_or_overreaching_csr_is_refused_without_consuming(ctx: Ctx, case: str) -> None:
    make, expected = CSR_CASES[case]
    csr = make()
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, PROVISION, {"order_id": ctx.order, "serial": SERIAL, "csr": csr})

    code = assert_rejected(ctx.inst, response, before, code=expected)
    refusals = events.list_events(ctx.inst, after=before.seq, kind="unit.refused")
    assert [e["code"] for e in refusals] == [code]


def test_certificate_pem_instead_of_a_csr_is_refused(ctx: Ctx) -> None:
    before = snapshot(ctx.inst)
    response = post_json(
        ctx.http, PROVISION, {"order_id": ctx.order, "serial": SERIAL, "csr": root_certificate_pem(ctx)}
    )
    assert_rejected(ctx.inst, response, before, status=400, code="csr_invalid")


def test_the_same_request_with_a_proper_csr_is_issued(ctx: Ctx) -> None:
    """Positive control: the shared setup does let a well-formed request through."""
    tested_device(ctx.fx, "SN-GOOD-1")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _pem(make_csr(key, subject=_subject((NameOID.SERIAL_NUMBER, "SN-GOOD-1"))))
    used = orders.get_order(ctx.inst, ctx.order).used

    response = post_json(ctx.http, PROVISION, {"order_id": ctx.order, "serial": "SN-GOOD-1", "csr": csr})

    assert response.status_code == 201, response.text
    assert orders.get_order(ctx.inst, ctx.order).used == used + 1


# ----------------------------------------------------------------------------- serials, orders, JSON types


BAD_SERIALS: dict[str, Any] = {
    "nul": "SN\x000001",
    "newline": "SN0001\nSN0002",
    "carriage-return": "SN0001\r",
    "tab": "SN\t0001",
    "ansi-escape": "\x1b[31mSN0001",
    "delete-char": "SN0001\x7f",
    "sql-quote": "SN0001' OR '1'='1",
    "sql-drop": "SN0001'; DROP TABLE units; --",
    "ten-kilobytes": "S" * 10_240,
    "sixty-five-chars": "S" * 65,
    "latin-accent": "SNé0001",
    "cjk": "序列号0001",
    "right-to-left-override": "SN\u202e1000",
    "emoji": "SN\U0001f4a50001",
    "fullwidth-digits": "SN\uff10\uff10\uff11",
    "empty": "",
    "spaces-only": "   ",
    "leading-space": " SN0001",
    "leading-dash": "-SN0001",
    "path-traversal": "../../etc/passwd",
    "path-inside": "A/../../x",  # issued before issue 23: then no ledger export could be written
    "slash": "SN/77",
    "number": 1234,
    "float": 1.5,
    "true": True,
    "null": None,
    "list": [SERIAL],
    "object": {"$ne": ""},
}


@pytest.mark.parametrize("case", list(BAD_SERIALS))
def test_malformed_serial_is_refused_as_serial_invalid(ctx: Ctx, case: str) -> None:
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, PROVISION, {"order_id": ctx.order, "serial": BAD_SERIALS[case], "csr": good_csr()})

    assert_rejected(ctx.inst, response, before, status=400, code="serial_invalid")
    [event] = events.list_events(ctx.inst, after=before.seq, kind="unit.refused")
    assert event["code"] == "serial_invalid"
    if event["serial"] is not None:  # only a printable, bounded serial is copied into the log
        assert len(event["serial"]) <= 64 and event["serial"].isprintable()


UNKNOWN_ORDERS: dict[str, Any] = {
    "missing": "po-missing",
    "empty": "",
    "one-kilobyte": "p" * 1024,
    "path-traversal": "../../../etc/passwd",
    "sql": "po-bad' OR '1'='1",
    "case-changed": "PO-BAD",
    "trailing-space": "po-bad ",
    "nul": "po-bad\x00",
    "number": 42,
    "null": None,
    "list": ["po-bad"],
    "object": {"$ne": None},
}


@pytest.mark.parametrize("case", list(UNKNOWN_ORDERS))
def test_unknown_order_id_is_not_found(ctx: Ctx, case: str) -> None:
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, PROVISION, {"order_id": UNKNOWN_ORDERS[case], "serial": SERIAL, "csr": good_csr()})

    assert_rejected(ctx.inst, response, before, status=404, code="order_not_found")


BAD_CSR_TYPES: dict[str, Any] = {
    "list": ["-----BEGIN CERTIFICATE REQUEST-----"],
    "number": 42,
    "null": None,
    "true": True,
    "object": {"pem": "x"},
}


@pytest.mark.parametrize("case", list(BAD_CSR_TYPES))
def test_csr_of_the_wrong_json_type_is_invalid(ctx: Ctx, case: str) -> None:
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, PROVISION, {"order_id": ctx.order, "serial": SERIAL, "csr": BAD_CSR_TYPES[case]})

    assert_rejected(ctx.inst, response, before, status=400, code="csr_invalid")


# ----------------------------------------------------------------------------- the HTTP body itself


RAW_BODIES: dict[str, tuple[bytes, str, int | None, str | None]] = {
    # name: (body, content type, expected status or None for "any 4xx", expected code or None)
    "truncated-json": (b'{"order_id": "po-bad", ', "application/json", 400, "malformed_json"),
    "not-json": (b"hello", "application/json", 400, "malformed_json"),
    "single-quotes": (b"{'order_id': 'po-bad'}", "application/json", 400, "malformed_json"),
    "trailing-garbage": (
        b'{"order_id": "po-bad", "serial": "x", "csr": "x"} xx',
        "application/json",
        400,
        "malformed_json",
    ),
    "empty": (b"", "application/json", 422, "invalid_request"),
    "array": (b"[]", "application/json", 422, "invalid_request"),
    "string": (b'"po-bad"', "application/json", 422, "invalid_request"),
    "null": (b"null", "application/json", 422, "invalid_request"),
    "missing-csr": (b'{"order_id": "po-bad", "serial": "SN-BAD-1"}', "application/json", 422, "invalid_request"),
    "extra-field": (
        b'{"order_id": "po-bad", "serial": "SN-BAD-1", "csr": "x", "quota": 1000}',
        "application/json",
        422,
        "invalid_request",
    ),
    "form-encoded": (b"order_id=po-bad&serial=SN-BAD-1&csr=x", "application/x-www-form-urlencoded", None, None),
    "text-plain": (b'{"order_id": "po-bad", "serial": "SN-BAD-1", "csr": "x"}', "text/plain", None, None),
    "invalid-utf8": (
        b'{"order_id": "po-bad\xff\xfe", "serial": "SN-BAD-1", "csr": "x"}',
        "application/json",
        400,
        None,
    ),
    "huge-integer": (
        b'{"order_id": "po-bad", "serial": ' + b"9" * 5000 + b', "csr": "x"}',
        "application/json",
        400,
        None,
    ),
    "deeply-nested": (
        b'{"order_id": "po-bad", "serial": ' + b"[" * 100_000 + b"]" * 100_000 + b', "csr": "x"}',
        "application/json",
        400,
        None,
    ),
    "nan-order": (b'{"order_id": NaN, "serial": "SN-BAD-1", "csr": "x"}', "application/json", None, None),
}


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_malformed_request_body_is_refused(ctx: Ctx, case: str) -> None:
    body, content_type, status, code = RAW_BODIES[case]
    before = snapshot(ctx.inst)

    response = ctx.http.post(PROVISION, content=body, headers={"content-type": content_type})

    assert_rejected(ctx.inst, response, before, status=status, code=code)


def _padded_body(total: int) -> bytes:
    head = b'{"order_id": "po-bad", "serial": "SN-BAD-1", "csr": "'
    tail = b'"}'
    return head + b"A" * (total - len(head) - len(tail)) + tail


def test_body_over_the_limit_is_refused_as_too_large(ctx: Ctx) -> None:
    limit = ctx.inst.limits.max_body_bytes
    before = snapshot(ctx.inst)

    response = ctx.http.post(PROVISION, content=_padded_body(limit + 1), headers={"content-type": "application/json"})

    assert_rejected(ctx.inst, response, before, status=413, code="body_too_large")


def test_streamed_body_over_the_limit_without_a_length_is_refused_as_too_large(ctx: Ctx) -> None:
    body = _padded_body(ctx.inst.limits.max_body_bytes + 1)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    before = snapshot(ctx.inst)
    response = ctx.http.post(PROVISION, content=chunks(), headers={"content-type": "application/json"})

    assert "content-length" not in response.request.headers
    assert_rejected(ctx.inst, response, before, status=413, code="body_too_large")


def test_body_exactly_at_the_limit_reaches_the_app(ctx: Ctx) -> None:
    """The boundary: a body of exactly max_body_bytes is read (and then refused for its giant CSR)."""
    before = snapshot(ctx.inst)

    response = ctx.http.post(
        PROVISION, content=_padded_body(ctx.inst.limits.max_body_bytes), headers={"content-type": "application/json"}
    )

    assert_rejected(ctx.inst, response, before, status=400, code="csr_invalid")


# ----------------------------------------------------------------------------- batches


def test_batch_with_more_units_than_allowed_is_refused_whole(ctx: Ctx) -> None:
    n = ctx.inst.limits.max_batch_units + 1
    units = [{"serial": SERIAL, "csr": "x"} for _ in range(n)]
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, BATCH, {"order_id": ctx.order, "units": units})

    assert_rejected(ctx.inst, response, before, status=422, code="batch_too_large")


@pytest.mark.parametrize(
    "units",
    [[], "SN-BAD-1", {"serial": SERIAL, "csr": "x"}, None, [[SERIAL, "csr"]]],
    ids=["empty-list", "string", "object", "null", "list-of-lists"],
)
def test_batch_whose_units_are_not_a_list_of_objects_is_refused(ctx: Ctx, units: Any) -> None:
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, BATCH, {"order_id": ctx.order, "units": units})

    assert_rejected(ctx.inst, response, before, status=422, code="invalid_request")


def test_batch_of_broken_units_answers_each_with_its_own_code_and_consumes_nothing(ctx: Ctx) -> None:
    units = [
        {"serial": 5, "csr": good_csr()},
        {"serial": SERIAL, "csr": ["x"]},
        {"serial": "bad serial!", "csr": good_csr()},
        {"serial": SERIAL, "csr": "garbage"},
        {},
    ]
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, BATCH, {"order_id": ctx.order, "units": units})

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["refused"] * len(units)
    codes = [r["error"]["code"] for r in results]
    assert all(CODE_RE.fullmatch(c) for c in codes), codes
    assert codes[2:4] == ["serial_invalid", "csr_invalid"]
    after = snapshot(ctx.inst)
    assert (after.used, after.units) == (before.used, before.units)


# ----------------------------------------------------------------------------- test records


def _record(serial: str = "SN-REC-1") -> dict[str, Any]:
    return openhtf_record(serial, "fx-1", fail=False, rng=random.Random(7), now_ms=1_700_000_000_000)


def _without(key: str) -> Callable[[dict[str, Any]], Any]:
    def fn(r: dict[str, Any]) -> Any:
        del r[key]
        return r

    return fn


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def fn(r: dict[str, Any]) -> Any:
        r[key] = value
        return r

    return fn


def _phase0(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def fn(r: dict[str, Any]) -> Any:
        r["phases"][0][key] = value
        return r

    return fn


def _phase0_without(key: str) -> Callable[[dict[str, Any]], Any]:
    def fn(r: dict[str, Any]) -> Any:
        del r["phases"][0][key]
        return r

    return fn


BAD_RECORDS: dict[str, tuple[Callable[[dict[str, Any]], Any], int, str]] = {
    "missing-dut-id": (_without("dut_id"), 400, "serial_invalid"),
    "dut-id-number": (_with("dut_id", 12345), 400, "serial_invalid"),
    "dut-id-sql": (_with("dut_id", "x'; DROP TABLE test_records; --"), 400, "serial_invalid"),
    "dut-id-control-chars": (_with("dut_id", "SN-REC-1\n"), 400, "serial_invalid"),
    "missing-station-id": (_without("station_id"), 422, "test_record_invalid"),
    "station-id-control-chars": (_with("station_id", "fx-1\x1b[2J"), 422, "test_record_invalid"),
    "missing-outcome": (_without("outcome"), 422, "test_record_invalid"),
    "bad-outcome": (_with("outcome", "MOSTLY_PASS"), 422, "test_record_invalid"),
    "lower-case-outcome": (_with("outcome", "pass"), 422, "test_record_invalid"),
    "outcome-true": (_with("outcome", True), 422, "test_record_invalid"),
    "negative-start": (_with("start_time_millis", -1), 422, "test_record_invalid"),
    "negative-end": (_with("end_time_millis", -5), 422, "test_record_invalid"),
    "end-before-start": (_with("end_time_millis", 1_600_000_000_000), 422, "test_record_invalid"),
    "start-as-text": (_with("start_time_millis", "yesterday"), 422, "test_record_invalid"),
    "start-as-bool": (_with("start_time_millis", True), 422, "test_record_invalid"),
    "start-as-float": (_with("start_time_millis", 1.7e12), 422, "test_record_invalid"),
    "start-far-future": (_with("start_time_millis", 10**30), 422, "test_record_invalid"),
    "phases-object": (_with("phases", {"power": {"name": "power"}}), 422, "test_record_invalid"),
    "phases-string": (_with("phases", "PASS"), 422, "test_record_invalid"),
    "phases-null": (_with("phases", None), 422, "test_record_invalid"),
    "phase-not-object": (_with("phases", [42]), 422, "test_record_invalid"),
    "phase-without-name": (_phase0_without("name"), 422, "test_record_invalid"),
    "phase-negative-start": (_phase0("start_time_millis", -3), 422, "test_record_invalid"),
    "measurements-string": (_phase0("measurements", "3.3V"), 422, "test_record_invalid"),
    "measurement-not-object": (_phase0("measurements", [1.0]), 422, "test_record_invalid"),
    "too-many-phases": (
        _with("phases", [{"name": f"p{i}", "outcome": "PASS"} for i in range(501)]),
        422,
        "test_record_invalid",
    ),
    "over-max-record-bytes": (
        _with("metadata", {"blob": "x" * (1024 * 1024 + 1)}),
        422,
        "test_record_invalid",
    ),
    "record-is-a-list": (lambda r: [r], 422, "invalid_request"),
    "record-is-a-string": (lambda r: "PASS", 422, "invalid_request"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_malformed_test_record_is_refused_and_not_stored(ctx: Ctx, case: str) -> None:
    mutate, status, code = BAD_RECORDS[case]
    record = mutate(_record())
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, RECORDS, record)

    assert_rejected(ctx.inst, response, before, status=status, code=code)
    assert testrecords.records_for_serial(ctx.inst, "SN-REC-1") == []


def test_the_unbroken_test_record_is_stored(ctx: Ctx) -> None:
    """Positive control for the record cases (another serial, so the cases above stay meaningful)."""
    response = post_json(ctx.http, RECORDS, _record("SN-REC-GOOD"))
    assert response.status_code == 201, response.text
    assert [r["outcome"] for r in testrecords.records_for_serial(ctx.inst, "SN-REC-GOOD")] == ["PASS"]


def test_record_batch_over_the_limit_is_refused_whole(ctx: Ctx) -> None:
    records = [_record(f"SN-REC-B{i}") for i in range(ctx.inst.limits.max_batch_records + 1)]
    before = snapshot(ctx.inst)

    response = post_json(ctx.http, RECORDS + "/batch", {"records": records})

    assert_rejected(ctx.inst, response, before, status=422, code="batch_too_large")


# ----------------------------------------------------------------------------- enrolment (unauthenticated)


ENROLL_CSRS: dict[str, Callable[[], str]] = {
    "garbage": lambda: "garbage",
    "truncated": truncated_pem,
    "rsa-2048": _key_csr(lambda: rsa.generate_private_key(65537, 2048)),
    "signature-does-not-verify": unsigned_csr,
    "unknown-key-algorithm": unknown_key_algorithm_csr,
    "unknown-named-curve": unknown_named_curve_csr,
}


@pytest.mark.parametrize("case", list(ENROLL_CSRS))
def test_enrolment_with_a_bad_csr_is_refused_before_any_token_is_spent(ctx: Ctx, case: str) -> None:
    before = snapshot(ctx.inst)
    with httpx.Client(
        base_url=ctx.world.url, verify=ssl.create_default_context(cafile=str(ctx.world.root_ca)), timeout=30
    ) as anonymous:
        response = post_json(anonymous, "/api/v1/enroll", {"token": "fge_" + "x" * 32, "csr": ENROLL_CSRS[case]()})

    assert_rejected(ctx.inst, response, before)


# ----------------------------------------------------------------------------- admin API


def _admin_with(ctx: Ctx, authorization: str | None) -> httpx.Client:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.Client(
        base_url=ctx.world.url,
        verify=ssl.create_default_context(cafile=str(ctx.world.root_ca)),
        headers=headers,
        timeout=30,
    )


NEW_ORDER = {"product_id": "sensor", "site_id": "cm-a", "quota": 5}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer fgt_" + "A" * 43, "Bearer not-a-token", "Bearer", "Basic YWRtaW46YWRtaW4=", "fgt_nobearer"],
    ids=["no-token", "unknown-token", "malformed-token", "empty-bearer", "basic-auth", "no-scheme"],
)
def test_admin_call_without_a_valid_token_is_unauthorized(ctx: Ctx, authorization: str | None) -> None:
    before = snapshot(ctx.inst)
    with _admin_with(ctx, authorization) as client:
        response = client.post("/api/v1/orders", json=NEW_ORDER)
    assert_rejected(ctx.inst, response, before, status=401, code="unauthorized")


def test_revoked_token_is_unauthorized(ctx: Ctx) -> None:
    made, secret = tokens.create_token(ctx.inst, name="leaver", role="admin", actor="test")
    tokens.revoke_token(ctx.inst, made.id, actor="test")
    before = snapshot(ctx.inst)
    with _admin_with(ctx, f"Bearer {secret}") as client:
        response = client.post("/api/v1/orders", json=NEW_ORDER)
    assert_rejected(ctx.inst, response, before, status=401, code="unauthorized")


def test_auditor_can_read_orders_but_not_create_them(ctx: Ctx) -> None:
    _, secret = tokens.create_token(ctx.inst, name="auditor", role="auditor", actor="test")
    with _admin_with(ctx, f"Bearer {secret}") as auditor:
        assert auditor.get("/api/v1/orders").status_code == 200
        before = snapshot(ctx.inst)
        response = auditor.post("/api/v1/orders", json=NEW_ORDER)
        assert_rejected(ctx.inst, response, before, status=403, code="forbidden")
        before = snapshot(ctx.inst)
        response = auditor.post(f"/api/v1/orders/{ctx.order}/state", json={"state": "closed"})
        assert_rejected(ctx.inst, response, before, status=403, code="forbidden")
    assert orders.get_order(ctx.inst, ctx.order).state == "active"


def test_engineer_cannot_create_fixtures_or_tokens(ctx: Ctx) -> None:
    _, secret = tokens.create_token(ctx.inst, name="engineer", role="engineer", actor="test")
    with _admin_with(ctx, f"Bearer {secret}") as engineer:
        before = snapshot(ctx.inst)
        response = engineer.post("/api/v1/fixtures", json={"id": "fx-rogue", "site_id": "cm-a"})
        assert_rejected(ctx.inst, response, before, status=403, code="forbidden")
        response = engineer.post("/api/v1/tokens", json={"name": "rogue", "role": "admin"})
        assert_rejected(ctx.inst, response, before, status=403, code="forbidden")


def test_duplicate_product_is_a_conflict(ctx: Ctx) -> None:
    before = snapshot(ctx.inst)
    response = ctx.admin.post("/api/v1/products", json={"id": "sensor", "name": "Sensor again"})
    assert_rejected(ctx.inst, response, before, status=409, code="product_exists")


def test_duplicate_order_id_is_a_conflict(ctx: Ctx) -> None:
    before = snapshot(ctx.inst)
    response = ctx.admin.post("/api/v1/orders", json={**NEW_ORDER, "id": ctx.order})
    assert_rejected(ctx.inst, response, before, status=409, code="order_exists")
    assert orders.get_order(ctx.inst, ctx.order).quota == 100


BAD_ORDERS: dict[str, tuple[dict[str, Any], int, str]] = {
    "naive-valid-from": ({**NEW_ORDER, "valid_from": "2030-01-01T00:00:00"}, 422, "invalid_time"),
    "until-before-from": (
        {**NEW_ORDER, "valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
        422,
        "invalid_time",
    ),
    "not-a-date": ({**NEW_ORDER, "valid_until": "next tuesday"}, 422, "invalid_time"),
    "year-one-east-of-utc": ({**NEW_ORDER, "valid_from": "0001-01-01T00:00:00+01:00"}, 422, "invalid_time"),
    "negative-quota": ({**NEW_ORDER, "quota": -1}, 422, "invalid_request"),
    "quota-too-big": ({**NEW_ORDER, "quota": 10**12}, 422, "invalid_request"),
    "quota-as-text": ({**NEW_ORDER, "quota": "many"}, 422, "invalid_request"),
    "unknown-product": ({**NEW_ORDER, "product_id": "toaster"}, 404, "product_not_found"),
    "unknown-site": ({**NEW_ORDER, "site_id": "cm-z"}, 404, "site_not_found"),
    "bad-order-id": ({**NEW_ORDER, "id": "PO 1; DROP"}, 422, "invalid_order_id"),
}


@pytest.mark.parametrize("case", list(BAD_ORDERS))
def test_bad_order_is_refused_and_nothing_is_created(ctx: Ctx, case: str) -> None:
    body, status, code = BAD_ORDERS[case]
    before = snapshot(ctx.inst)
    response = ctx.admin.post("/api/v1/orders", json=body)
    # The status is what a client must rely on; the exact code is checked where it is documented.
    assert_rejected(ctx.inst, response, before, status=status, code=code)


HUGE = 10**30  # beyond any database's integer


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/v1/events", {"after": HUGE}),
        ("GET", "/api/v1/events", {"after": "first"}),
        ("GET", "/api/v1/orders/po-bad/units", {"after": HUGE}),
        ("GET", "/api/v1/orders/po-bad/units", {"limit": "all"}),
        ("POST", f"/api/v1/quota-changes/{HUGE}/approve", {}),
        ("POST", f"/api/v1/quota-changes/{HUGE}/reject", {}),
        ("POST", "/api/v1/quota-changes/abc/approve", {}),
        ("GET", "/api/v1/orders/po-missing", {}),
    ],
    ids=[
        "events-after-huge",
        "events-after-text",
        "units-after-huge",
        "units-limit-text",
        "approve-huge-id",
        "reject-huge-id",
        "approve-text-id",
        "missing-order",
    ],
)
def test_admin_query_with_out_of_range_or_wrong_type_parameters_is_a_client_error(
    ctx: Ctx, method: str, path: str, params: dict[str, Any]
) -> None:
    before = snapshot(ctx.inst)
    response = ctx.admin.request(method, path, params=params)
    assert_rejected(ctx.inst, response, before)
