"""What each ``fabguard-station`` command does; ``cli`` parses the command line and maps failures to exit codes."""

from __future__ import annotations

import base64
import dataclasses
import getpass
import hashlib
import json
import os
import re
import sys
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard_station.client import Credentials, FixtureClient
from fabguard_station.client import enroll as enroll_station
from fabguard_station.delivery import Delivered, deliver
from fabguard_station.device import field_challenge_message
from fabguard_station.exit_codes import Exit
from fabguard_station.file_spool import FileSpool
from fabguard_station.firmware import fetch_package
from fabguard_station.matter_partition import PartitionError, find_tool, make_partition
from fabguard_station.openhtf_upload import FabGuardUploader
from fabguard_station.token_keys import token_session, unit_csr_pem, unit_key

TOKEN_ENV = "FABGUARD_ENROLLMENT_TOKEN"
PIN_ENV = "FABGUARD_PKCS11_PIN"
SERVER_ENV = "FABGUARD_STATION_SERVER"  # overrides the enrolled server URL (a site agent's)
_OPENHTF_SPOOLED = re.compile(r"^\d{12}-[A-Za-z0-9_-]*\.json$")  # the OpenHTF uploader's spool files


class UsageError(Exception):
    """The call cannot work as it is: a missing option, an unreadable file, no credentials, no secret."""


@dataclass
class Outcome:
    exit: Exit
    body: dict[str, Any] = field(default_factory=dict)  # what --json adds
    lines: list[str] = field(default_factory=list)  # what a person reads
    error: tuple[str, str] | None = None  # (code, message), printed after the lines


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _secret(file: Path | None, env: str, what: str) -> str:
    """A secret from a file or the environment; asked for only at a terminal, never otherwise."""
    if file is not None:
        return _read(file, what).decode().strip()
    if os.environ.get(env):
        return os.environ[env]
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    raise UsageError(f"no {what}: set {env} or give its file (nothing prompts without a terminal)")


def _credentials(args: Namespace) -> Credentials:
    try:
        credentials = Credentials.load(args.dir)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"no station credentials in {args.dir} ({exc}): run 'fabguard-station enroll' first") from None
    # Another server for the same credentials: the site agent the line runs on while the link to the central
    # server is down (its TLS certificate is under the station CA, so the enrolled CA file verifies it).
    server = os.environ.get(SERVER_ENV, "").strip()
    return dataclasses.replace(credentials, server=server.rstrip("/")) if server else credentials


@contextmanager
def _client(args: Namespace) -> Iterator[FixtureClient]:
    # One quick resend on a lost connection; a busy server is given 5 s, then the step hears 4 and moves on.
    with FixtureClient(_credentials(args), timeout=args.timeout, retries=1, busy_retry_seconds=5.0) as client:
        yield client


def _file_name(serial: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", serial)


def enroll(args: Namespace) -> Outcome:
    token = _secret(args.token_file, TOKEN_ENV, "enrolment token")
    out = args.out or args.dir
    _read(args.ca, "the CA certificate")
    creds = enroll_station(args.server, token, out, ca_file=args.ca, timeout=args.timeout)
    body = {"fixture_id": creds.fixture_id, "site_id": creds.site_id, "directory": str(out)}
    return Outcome(
        Exit.DONE, body, [f"enrolled fixture {creds.fixture_id} at site {creds.site_id}; credentials in {out}"]
    )


def whoami(args: Namespace) -> Outcome:
    with _client(args) as client:
        me = client.whoami()
    return Outcome(Exit.DONE, dict(me), [f"fixture {me['fixture_id']} at site {me['site_id']}"])


def _spool(args: Namespace) -> FileSpool:
    return FileSpool(args.spool or args.dir / "spool")


def _exit_of(results: list[Delivered]) -> Exit:
    if any(r.status == "rejected" or r.fixture_refused for r in results):
        return Exit.REFUSED
    if any(r.status == "spooled" for r in results):
        return Exit.UNAVAILABLE
    return Exit.DONE


def _line(r: Delivered) -> str:
    if r.status == "stored":
        units = ", ".join(f"{rec.get('serial')} {rec.get('outcome')} (record {rec.get('id')})" for rec in r.records)
        return f"stored   {r.entry.name}: {units}"
    if r.status == "rejected":
        return f"REFUSED  {r.entry.name}: {r.code}: {r.message} (kept in {r.entry.path.parent})"
    why = f"{r.code}: {r.message}" if r.code else "waiting for an earlier file"
    return f"spooled  {r.entry.name}: {why}; 'fabguard-station spool flush' sends it"


def _first_error(results: list[Delivered]) -> tuple[str, str] | None:
    for wanted in ("rejected", "spooled"):
        for r in results:
            if r.status == wanted and r.code is not None:
                return r.code, r.message or ""
    return None


def upload(args: Namespace) -> Outcome:
    data = [(path, _read(path, "the test-record file")) for path in args.files]
    spool = _spool(args)
    earlier = spool.pending()
    mine = [spool.add(content, format=args.format, tz=args.tz, name=str(path)) for path, content in data]
    with _client(args) as client:
        results = deliver(client, spool, earlier + mine)
    own = results[len(earlier) :]
    exit = _exit_of(own)
    body: dict[str, Any] = {
        "files": [r.to_dict() for r in own],
        "earlier": [r.to_dict() for r in results[: len(earlier)]],
    }
    error = _first_error(own)
    if error is not None:
        body["error"] = {"code": error[0], "message": error[1]}
    lines = [_line(r) for r in results]
    return Outcome(exit, body, lines, error if exit == Exit.REFUSED else None)


def spool_status(args: Namespace) -> Outcome:
    spool = _spool(args)
    pending = spool.pending()
    rejected = spool.rejected()
    openhtf = sorted(p.name for p in spool.directory.iterdir() if _OPENHTF_SPOOLED.match(p.name))
    body = {
        "pending": [{"file": e.name, "spooled_as": e.path.name, "format": e.format} for e in pending],
        "openhtf_pending": openhtf,
        "rejected": [
            {"file": r.entry.name, "spooled_as": r.entry.path.name, "error": {"code": r.code, "message": r.message}}
            for r in rejected
        ],
    }
    lines = [f"{len(pending) + len(openhtf)} waiting, {len(rejected)} rejected in {spool.directory}"]
    lines += [f"waiting   {e.name or e.path.name} ({e.format})" for e in pending] + [
        f"waiting   {n} (OpenHTF)" for n in openhtf
    ]
    lines += [f"rejected  {r.entry.name or r.entry.path.name}: {r.code}: {r.message}" for r in rejected]
    return Outcome(Exit.DONE, body, lines)


def spool_flush(args: Namespace) -> Outcome:
    spool = _spool(args)
    has_openhtf = any(_OPENHTF_SPOOLED.match(p.name) for p in spool.directory.iterdir())
    with _client(args) as client:
        results = deliver(client, spool, spool.pending())
        flushed = FabGuardUploader(client, spool.directory, max_attempts=1).flush() if has_openhtf else None
    exit = _exit_of(results)
    body: dict[str, Any] = {"files": [r.to_dict() for r in results]}
    lines = [_line(r) for r in results] or ["nothing waiting"]
    if flushed is not None:
        body["openhtf"] = {"sent": flushed.sent, "rejected": flushed.rejected, "pending": flushed.pending}
        lines.append(f"OpenHTF records: {flushed.sent} sent, {flushed.rejected} rejected, {flushed.pending} waiting")
        if flushed.rejected and exit == Exit.DONE:
            exit = Exit.REFUSED
        elif flushed.pending and exit == Exit.DONE:
            exit = Exit.UNAVAILABLE
    error = _first_error(results)
    if error is not None:
        body["error"] = {"code": error[0], "message": error[1]}
    return Outcome(exit, body, lines, error if exit == Exit.REFUSED else None)


def _token_args(args: Namespace) -> tuple[str, str, str] | None:
    if args.pkcs11_module is None:
        return None
    label = args.key_label or args.serial
    if not args.token or not label:
        raise UsageError("--pkcs11-module needs --token and --key-label (or --serial)")
    return args.pkcs11_module, args.token, label


def provision(args: Namespace) -> Outcome:
    token = _token_args(args)
    if (args.csr is None) == (token is None):
        raise UsageError("give exactly one of --csr FILE or --pkcs11-module LIB --token LABEL")
    attestation = None
    if args.attestation is not None:
        try:
            attestation = json.loads(_read(args.attestation, "the attestation"))
        except ValueError as exc:
            raise UsageError(f"the attestation {args.attestation} is not JSON: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / _file_name(args.serial)
    body: dict[str, Any] = {"serial": args.serial}
    if token is not None:
        module, token_label, key_label = token
        pin = _secret(args.pin_file, PIN_ENV, "token PIN")
        with token_session(module, token_label, pin) as session:
            key = unit_key(session, key_label)
            csr_pem = unit_csr_pem(key, args.serial)
        stem.with_suffix(".csr.pem").write_text(csr_pem)
        body.update({"key_label": key_label, "key_created": key.created, "csr": str(stem.with_suffix(".csr.pem"))})
    else:
        csr_pem = _read(args.csr, "the CSR").decode(errors="replace")
    with _client(args) as client:
        issued = client.provision(args.order, args.serial, csr_pem, attestation=attestation)
    cert, chain = Path(f"{stem}.pem"), Path(f"{stem}.chain.pem")
    cert.write_text(issued.certificate_pem)
    chain.write_text("".join(issued.chain_pem))
    body.update({"certificate": str(cert), "chain": str(chain), "replayed": issued.replayed})
    if issued.identity is not None:
        body["identity"] = str(_write_identity(args.out, issued.identity))
    again = " (the certificate issued before)" if issued.replayed else ""
    return Outcome(Exit.DONE, body, [f"unit {issued.serial} provisioned{again}: {cert}"])


def _write_identity(out: Path, identity: dict[str, Any]) -> Path:
    """SERIAL.identity.json: the unit's serial, MAC addresses and Matter onboarding data, for the line's
    flashing and label steps (docs/identities.md)."""
    path = out / f"{_file_name(str(identity['serial']))}.identity.json"
    path.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return path


def allocate(args: Namespace) -> Outcome:
    """Allocate a unit's identities before it is provisioned, and write them where the line needs them."""
    with _client(args) as client:
        answer = client.allocate(args.order, args.serial)
    args.out.mkdir(parents=True, exist_ok=True)
    path = _write_identity(args.out, answer)
    macs = ", ".join(answer.get("mac_addresses") or []) or "no MAC addresses"
    again = " (allocated before)" if answer.get("replayed") else ""
    body = {"serial": answer["serial"], "identity": str(path), "replayed": answer.get("replayed", False)}
    return Outcome(Exit.DONE, body, [f"unit {answer['serial']} allocated{again}: {macs}; {path}"])


def matter_partition(args: Namespace) -> Outcome:
    """The unit's ESP32 Matter factory data partition, made by esp-matter-mfg-tool from what FabGuard gave it."""
    try:
        identity = json.loads(_read(args.identity, "the identity"))
    except ValueError as exc:
        raise UsageError(f"the identity {args.identity} is not JSON: {exc}") from None
    for path, what in ((args.certificate, "the DAC"), (args.chain, "the chain"), (args.key, "the DAC's key")):
        _read(path, what)
    try:
        tool = find_tool(args.tool)
        made = make_partition(
            tool,
            identity,
            dac=args.certificate,
            chain=args.chain,
            dac_key=args.key,
            cd=args.cd,
            out=args.out,
            target=args.target,
        )
    except PartitionError as exc:
        if exc.missing:
            raise UsageError(str(exc)) from None
        return Outcome(
            Exit.STATION,
            {"error": {"code": "matter_partition_failed", "message": str(exc)}},
            [],
            ("matter_partition_failed", str(exc)),
        )
    body = {"serial": identity.get("serial"), "partition": str(made.binary), "partition_csv": str(made.csv)}
    return Outcome(Exit.DONE, body, [f"unit {identity.get('serial')}: factory partition {made.binary}"])


def firmware_fetch(args: Namespace) -> Outcome:
    with _client(args) as client:
        package = fetch_package(client, order_id=args.order, serial=args.serial, release_id=args.release)
    args.out.write_bytes(package)
    body = {"path": str(args.out), "bytes": len(package), "sha256": hashlib.sha256(package).hexdigest()}
    return Outcome(Exit.DONE, body, [f"package for unit {args.serial} ({len(package)} bytes) written to {args.out}"])


def _software_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, "the unit key"), password=None)
    except ValueError as exc:
        raise UsageError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{path} is not an EC private key")
    return key


def field_answer(args: Namespace) -> Outcome:
    try:
        message = field_challenge_message(args.nonce)
    except ValueError as exc:
        raise UsageError(f"--nonce: {exc}") from None
    chain = _read(args.chain, "the certificate chain").decode(errors="replace")
    token = _token_args(args)
    if (args.key is None) == (token is None):
        raise UsageError("give exactly one of --key FILE or --pkcs11-module LIB --token LABEL --key-label L")
    if token is not None:
        module, token_label, key_label = token
        with token_session(module, token_label, _secret(args.pin_file, PIN_ENV, "token PIN")) as session:
            key: ec.EllipticCurvePrivateKey = unit_key(session, key_label, create=False)
            signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        key = _software_key(args.key)
        digest = hashes.SHA384() if key.curve.key_size > 256 else hashes.SHA256()
        signature = key.sign(message, ec.ECDSA(digest))
    answer = {"nonce": args.nonce, "signature": base64.b64encode(signature).decode(), "chain": chain}
    if args.source:
        answer["source"] = args.source
    return Outcome(Exit.DONE, {"answer": answer}, [json.dumps(answer)])


__all__ = ["Outcome", "UsageError"]
