"""A software TPM for the key-attestation tests: Debian's swtpm on a unix socket, driven by tpm2-tools.

One TPM per test module (its own state directory, stopped by the fixture). It holds a primary key, an
attestation key (AK, restricted signing, persistent) and makes unit keys on demand. The CSR of a unit
key is signed inside the TPM (``tpm2_sign``) through a ``cryptography`` key object; TPM2_Certify is sent
raw with ``tpm2_send``, since tpm2-tools 5.4's ``tpm2_certify`` cannot pass qualifying data.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

AK_HANDLE = 0x81000002
KEY_HANDLE = 0x81000010
UNIT_KEY_ATTRIBUTES = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"
AK_ATTRIBUTES = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
TPM_RS_PW = 0x40000009
TPM_CC_CERTIFY = 0x148
TPM_ST_SESSIONS = 0x8002


@contextmanager
def running_tpm(directory: Path) -> Iterator[SoftwareTpm]:
    """A software TPM in ``directory`` (a test module's fixture), stopped on leaving; skips the test with
    the reason when swtpm or tpm2-tools is missing."""
    if (why := tpm_tools_missing()) is not None:
        pytest.skip(why)
    tpm = SoftwareTpm(directory).start()
    try:
        yield tpm
    finally:
        tpm.stop()


def tpm_tools_missing() -> str | None:
    """Why the software TPM cannot run here, or None."""
    for tool in ("swtpm", "tpm2_createprimary", "tpm2_send", "tpm2_sign"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install swtpm tpm2-tools)"
    return None


@dataclass
class TpmKey:
    """A unit key made in the TPM: its TPM2B_PUBLIC, its public key, and where its private part is."""

    public_area: bytes
    public_key: ec.EllipticCurvePublicKey
    pub_file: Path
    priv_file: Path


class SoftwareTpm:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state = directory / "state"
        self.state.mkdir(parents=True)
        self.socket = directory / "tpm.sock"
        self.env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:path={self.socket}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.counter = 0

    def start(self) -> SoftwareTpm:
        self.process = subprocess.Popen(
            [
                "swtpm", "socket", "--tpm2",
                "--tpmstate", f"dir={self.state}",
                "--server", f"type=unixio,path={self.socket}",
                "--ctrl", f"type=unixio,path={self.socket}.ctrl",
                "--flags", "not-need-init,startup-clear",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not (self.socket.exists() and Path(f"{self.socket}.ctrl").exists()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("swtpm did not start")
            time.sleep(0.02)
        self.tool("tpm2_createprimary", "-C", "e", "-g", "sha256", "-G", "ecc256", "-c", self.path("primary.ctx"))
        ak = self.create(AK_ATTRIBUTES, "ak")
        self.persist(ak, AK_HANDLE)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def tool(self, *args: str, stdin: bytes | None = None) -> bytes:
        done = subprocess.run(args, env=self.env, input=stdin, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode(errors='replace')}")
        # No resource manager between the tools and the TPM: free the transient slots each tool left.
        subprocess.run(["tpm2_flushcontext", "-t"], env=self.env, capture_output=True, check=False)
        return done.stdout

    def create(self, attributes: str, name: str | None = None) -> TpmKey:
        """A new P-256 key made inside the TPM under the primary key."""
        self.counter += 1
        name = name or f"key{self.counter}"
        pub, priv = self.dir / f"{name}.pub", self.dir / f"{name}.priv"
        self.tool(
            "tpm2_create", "-C", self.path("primary.ctx"), "-G", "ecc256:ecdsa-sha256:null",
            "-a", attributes, "-u", str(pub), "-r", str(priv),
        )  # fmt: skip
        return self._key(pub, priv)

    def imported(self, software_key: ec.EllipticCurvePrivateKey) -> TpmKey:
        """A software key imported under the primary: it works in the TPM, but was not born there."""
        self.counter += 1
        pem = self.dir / f"soft{self.counter}.pem"
        pem.write_bytes(
            software_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        pub, priv = self.dir / f"imp{self.counter}.pub", self.dir / f"imp{self.counter}.priv"
        self.tool(
            "tpm2_import", "-C", self.path("primary.ctx"), "-G", "ecc", "-i", str(pem),
            "-u", str(pub), "-r", str(priv),
        )  # fmt: skip
        return self._key(pub, priv)

    def _key(self, pub: Path, priv: Path) -> TpmKey:
        area = pub.read_bytes()
        raw = area[2:]
        # TPMT_PUBLIC of an ECC key without policy: the point is the last two TPM2B fields.
        y_len = struct.unpack(">H", raw[-34:-32])[0]
        assert y_len == 32
        x, y = raw[-66:-34], raw[-32:]
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        return TpmKey(area, key, pub, priv)

    def persist(self, key: TpmKey, handle: int) -> None:
        ctx = self.path("load.ctx")
        self.tool(
            "tpm2_load", "-C", self.path("primary.ctx"), "-u", str(key.pub_file), "-r", str(key.priv_file), "-c", ctx
        )
        self.tool("tpm2_evictcontrol", "-C", "o", "-c", ctx, hex(handle))

    def unpersist(self, handle: int) -> None:
        self.tool("tpm2_evictcontrol", "-C", "o", "-c", hex(handle))

    def sign(self, handle: int, data: bytes) -> bytes:
        """ECDSA-SHA256 over ``data`` by the key at ``handle`` (DER)."""
        message = self.dir / "message.bin"
        message.write_bytes(data)
        out = self.dir / "signature.der"
        self.tool("tpm2_sign", "-c", hex(handle), "-g", "sha256", "-f", "plain", "-o", str(out), str(message))
        return out.read_bytes()

    def certify(self, handle: int, qualifying: bytes) -> tuple[bytes, bytes]:
        """TPM2_Certify of the object at ``handle`` by the AK: (TPMS_ATTEST, TPMT_SIGNATURE)."""
        password = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)
        auth = password + password
        parameters = struct.pack(">H", len(qualifying)) + qualifying + struct.pack(">H", 0x0010)
        body = struct.pack(">II", handle, AK_HANDLE) + struct.pack(">I", len(auth)) + auth + parameters
        command = struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_CERTIFY) + body
        response = self.tool("tpm2_send", stdin=command)
        rc = struct.unpack(">I", response[6:10])[0]
        if rc != 0:
            raise RuntimeError(f"TPM2_Certify answered 0x{rc:x}")
        at = 14  # header (10) and parameterSize (4)
        size = struct.unpack(">H", response[at : at + 2])[0]
        attest = response[at + 2 : at + 2 + size]
        rest = response[at + 2 + size :]
        r_len = struct.unpack(">H", rest[4:6])[0]
        s_len = struct.unpack(">H", rest[6 + r_len : 8 + r_len])[0]
        return attest, rest[: 8 + r_len + s_len]

    def ak_public(self) -> ec.EllipticCurvePublicKey:
        out = self.dir / "ak.pem"
        self.tool("tpm2_readpublic", "-c", hex(AK_HANDLE), "-f", "pem", "-o", str(out))
        key = serialization.load_pem_public_key(out.read_bytes())
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key


class TpmSigningKey(ec.EllipticCurvePrivateKey):
    """A ``cryptography`` private key whose signatures the TPM makes: enough for a CSR builder."""

    def __init__(self, tpm: SoftwareTpm, handle: int, public: ec.EllipticCurvePublicKey) -> None:
        self._tpm, self._handle, self._public = tpm, handle, public

    def sign(self, data: Any, signature_algorithm: Any) -> bytes:
        assert isinstance(signature_algorithm.algorithm, hashes.SHA256)
        return self._tpm.sign(self._handle, bytes(data))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError

    def private_bytes(self, *args: Any) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> TpmSigningKey:
        return self

    def __deepcopy__(self, memo: Any) -> TpmSigningKey:
        return self


def csr_for(serial: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]))
        .sign(key, hashes.SHA256())
    )


def csr_sha256(csr: x509.CertificateSigningRequest) -> bytes:
    return hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).digest()


TCG_AK_EKU = x509.ObjectIdentifier("2.23.133.8.3")  # tcg-kp-AIKCertificate
CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # keyCertSign, cRLSign
SIGNING_USAGE = x509.KeyUsage(True, False, False, False, False, False, False, False, False)  # digitalSignature


@dataclass
class TestCa:
    """A CA made for the test: a TPM maker's AK-issuing CA, or a secure-element vendor's."""

    __test__ = False
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(
        cls,
        name: str,
        issuer: TestCa | None = None,
        *,
        path_length: int | None = None,
        usage: x509.KeyUsage | None = CA_USAGE,
    ) -> TestCa:
        """A CA (keyCertSign and cRLSign unless ``usage`` says otherwise), self-signed or under ``issuer``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        signer = issuer or None
        cert = _certificate(subject, key.public_key(), signer.cert.subject if signer else subject,
                            signer.key if signer else key, ca=True, path_length=path_length, usage=usage)  # fmt: skip
        return cls(key, cert)

    def issue(
        self,
        name: str,
        public_key: ec.EllipticCurvePublicKey,
        *,
        eku: tuple[x509.ObjectIdentifier, ...] = (),
        ca: bool = False,
        usage: x509.KeyUsage | None = SIGNING_USAGE,
    ) -> x509.Certificate:
        """An end-entity certificate (a secure element's device certificate; ``eku`` if given), or, to make
        a wrong one, a CA certificate (``ca``) for a key this CA does not hold."""
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return _certificate(subject, public_key, self.cert.subject, self.key, ca=ca, usage=usage, eku=eku)

    def issue_ak(self, name: str, public_key: ec.EllipticCurvePublicKey) -> x509.Certificate:
        """An AK certificate: an end entity with digitalSignature and the TCG AK purpose (2.23.133.8.3)."""
        return self.issue(name, public_key, eku=(TCG_AK_EKU,))

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    usage: x509.KeyUsage | None = None,
    eku: tuple[x509.ObjectIdentifier, ...] = (),
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(signer, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def tpm_attestation(
    attest: bytes, signature: bytes, public_area: bytes, chain: list[x509.Certificate]
) -> dict[str, Any]:
    """The request's ``attestation`` object for a TPM2_Certify."""
    return {
        "format": "tpm2-certify",
        "attest": base64.b64encode(attest).decode(),
        "signature": base64.b64encode(signature).decode(),
        "public": base64.b64encode(public_area).decode(),
        "ak_chain": [pem(c) for c in chain],
    }


@dataclass
class TpmUnit:
    """A unit whose key the TPM made: its CSR (signed in the TPM) and the certify bound to that CSR."""

    key: TpmKey
    csr: x509.CertificateSigningRequest
    attest: bytes
    signature: bytes

    def attestation(self, chain: list[x509.Certificate]) -> dict[str, Any]:
        return tpm_attestation(self.attest, self.signature, self.key.public_area, chain)

    @property
    def csr_pem(self) -> str:
        return self.csr.public_bytes(serialization.Encoding.PEM).decode()


def tpm_unit(tpm: SoftwareTpm, serial: str, *, bind_to: x509.CertificateSigningRequest | None = None) -> TpmUnit:
    """Make a key in the TPM, its CSR for ``serial``, and certify it with the CSR's SHA-256 as qualifying
    data (or another CSR's, ``bind_to``, to make a replay)."""
    key = tpm.create(UNIT_KEY_ATTRIBUTES)
    tpm.persist(key, KEY_HANDLE)
    try:
        csr = csr_for(serial, TpmSigningKey(tpm, KEY_HANDLE, key.public_key))
        attest, signature = tpm.certify(KEY_HANDLE, csr_sha256(bind_to or csr))
    finally:
        tpm.unpersist(KEY_HANDLE)
    return TpmUnit(key, csr, attest, signature)
