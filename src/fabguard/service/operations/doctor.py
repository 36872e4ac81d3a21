"""``fabguard doctor``: an instance examined as an operator would, each finding with what to fix.

Checks: file permissions (the home, the keys, the SQLite file, the passphrase and PIN files), key
protection (keys encrypted, the passphrase from a file, every CA key opening and matching its
certificate), the database (reachable, at the code's schema), the clock (after the CAs' start, not behind
the newest event, near the database server's), the published URLs (schemes, the server certificate
naming the public host, and, with a probe, whether they answer: a warning only), certificate expiry, and
the operator's HTTPS certificate if one is configured (``doctor_tls``).
A finding is ``ok``, a ``warning`` (worth a look) or ``failed`` (fix it: the command exits non-zero).
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from fabguard.domain.errors import FabGuardError
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, PIN_ENV, PIN_FILE_ENV
from fabguard.service.core.ca_registry import EXTERNAL_KEY
from fabguard.service.core.config import CONFIG_NAME
from fabguard.service.core.instance import Instance, require_current_schema
from fabguard.service.operations.doctor_tls import examine_operator_tls
from fabguard.service.operations.readiness import check_database, check_keys
from fabguard.store.models import CertificateAuthority, CrlRow, Event

Status = Literal["ok", "warning", "failed"]
# A URL probe: None if the URL answered, else why not (the CLI's does a GET; tests pass their own).
Probe = Callable[[str], str | None]

CA_FILES = ("root", "issuing", "station")
# How far ahead an expiry is worth a warning: a server certificate is replaced quickly, a CA is not.
SOON = {"server": timedelta(days=30)}
SOON_CA = timedelta(days=180)
CLOCK_TOLERANCE = timedelta(seconds=60)
# An offline root's CRL takes a ceremony to renew: warn a month ahead.
ROOT_CRL_SOON = timedelta(days=30)


@dataclass(frozen=True)
class Finding:
    check: str  # permissions, keys, database, clock, urls, certificates, tls, crl
    status: Status
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def examine(inst: Instance, env: Mapping[str, str], probe: Probe | None = None) -> list[Finding]:
    """Every finding about ``inst`` (opened without a schema check, so a database behind the code is a
    finding, not a refusal); ``probe`` reaches the published URLs, or ``None`` to stay offline."""
    findings = [
        *_permissions(inst, env),
        *_key_protection(inst, env),
        *_database(inst),
        *_clock(inst),
        *_urls(inst, probe),
        *_certificates(inst),
        *(Finding("tls", *judged) for judged in examine_operator_tls(inst.config, inst.clock())),
        *_offline_root_crl(inst),
    ]
    return findings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _permissions(inst: Instance, env: Mapping[str, str]) -> Iterator[Finding]:
    home, bad = inst.home, False
    if _mode(home) & 0o077:
        bad = True
        severity: Status = "failed" if _mode(home) & 0o002 else "warning"
        yield Finding(
            "permissions",
            severity,
            f"the instance directory {home} is open to others (mode {_mode(home):o})",
            f"chmod 700 {home}",
        )
    config = home / CONFIG_NAME
    if _mode(config) & 0o022:
        bad = True
        yield Finding("permissions", "failed", f"{config} can be changed by others", f"chmod 600 {config}")
    secrets = sorted((home / "keys").glob("*.key.pem"))
    database = home / "fabguard.db"
    if inst.db.is_sqlite and database.exists():
        secrets.append(database)  # token hashes, enrolment tokens, every unit
    for name in (PASSPHRASE_FILE_ENV, PIN_FILE_ENV):
        if env.get(name) and Path(env[name]).exists():
            secrets.append(Path(env[name]))
    for path in secrets:
        if _mode(path) & 0o077:
            bad = True
            yield Finding(
                "permissions",
                "failed",
                f"{path} is readable by others (mode {_mode(path):o})",
                f"chmod 600 {path}",
            )
    if not bad:
        yield Finding("permissions", "ok", f"{home}, its keys and secrets are the owner's alone")


def _key_protection(inst: Instance, env: Mapping[str, str]) -> Iterator[Finding]:
    plain = [p for p in sorted((inst.home / "keys").glob("*.key.pem")) if b"ENCRYPTED" not in p.read_bytes()[:64]]
    for path in plain:
        yield Finding(
            "keys",
            "failed",
            f"{path} is not encrypted",
            "restore the encrypted key from a backup; an unencrypted key must be treated as disclosed",
        )
    if env.get(PASSPHRASE_ENV):
        yield Finding(
            "keys",
            "warning",
            f"the key passphrase is in ${PASSPHRASE_ENV}, which child processes inherit",
            f"put it in a file only the service's user can read and name it in ${PASSPHRASE_FILE_ENV}",
        )
    if inst.keys.backend == "pkcs11" and env.get(PIN_ENV):
        yield Finding(
            "keys",
            "warning",
            f"the HSM PIN is in ${PIN_ENV}, which child processes inherit",
            f"put it in a file only the service's user can read and name it in ${PIN_FILE_ENV}",
        )
    if not env.get(PASSPHRASE_ENV) and not env.get(PASSPHRASE_FILE_ENV):
        yield Finding(
            "keys",
            "warning",
            "no key passphrase here: whether the keys open was not checked",
            f"run doctor as the service runs, with ${PASSPHRASE_FILE_ENV}",
        )
        return
    opened = True
    for ca in _cas_with_keys_here(inst):
        try:
            check_keys(inst, ca)
        except FabGuardError as exc:
            opened = False
            yield Finding(
                "keys",
                "failed",
                exc.message,
                "check the passphrase (and for an HSM its module, token and PIN)",
            )
    if opened and not plain:
        held = f"the CA keys ({inst.keys.backend}) are encrypted, open and match their certificates"
        yield Finding(
            "keys", "ok", held + ("; the root's is offline (docs/ceremony.md)" if "root" in _offline_cas(inst) else "")
        )


def _offline_cas(inst: Instance) -> set[str]:
    """The CAs whose keys this instance does not hold (an offline root): nothing to open here."""
    with inst.db.read() as s:
        rows = s.execute(select(CertificateAuthority.name, CertificateAuthority.key_ref)).all()
    return {name for name, key_ref in rows if key_ref.startswith(EXTERNAL_KEY)}


def _offline_root_crl(inst: Instance) -> Iterator[Finding]:
    """An offline root's CRL is signed at a ceremony, not here: say when the next one is due."""
    if "root" not in _offline_cas(inst):
        return
    with inst.db.read() as s:
        row = s.get(CrlRow, "root")
    fix = "hold a ceremony: fabguard ceremony request, ceremony crl, ceremony import (docs/ceremony.md)"
    if row is None:
        yield Finding("crl", "failed", "the offline root has no CRL here", fix)
    elif row.next_update <= inst.clock():
        yield Finding("crl", "failed", f"the offline root's CRL expired on {row.next_update:%Y-%m-%d}", fix)
    elif row.next_update - inst.clock() < ROOT_CRL_SOON:
        days = (row.next_update - inst.clock()).days
        yield Finding("crl", "warning", f"the offline root's CRL expires in {days} days", fix)
    else:
        yield Finding(
            "crl", "ok", f"the offline root's CRL (number {row.number}) is valid until {row.next_update:%Y-%m-%d}"
        )


def _cas_with_keys_here(inst: Instance) -> list[str]:
    """The CAs of ``CA_FILES`` whose key this instance holds: not an offline root, nor a site agent's root and
    station CA, whose keys stay at the central server (``external:``): they sign nothing here."""
    try:
        with inst.db.read() as s:
            rows = s.execute(select(CertificateAuthority).where(CertificateAuthority.name.in_(CA_FILES))).scalars()
            external = {row.name for row in rows if row.key_ref.startswith(EXTERNAL_KEY)}
    except SQLAlchemyError:  # the database check says why; check every key then
        external = set()
    return [ca for ca in CA_FILES if ca not in external]


def _database(inst: Instance) -> Iterator[Finding]:
    try:
        check_database(inst)
    except FabGuardError as exc:
        fix = {
            "database_behind_code": "back it up (fabguard backup), then: fabguard db upgrade",
            "database_ahead_of_code": "run the FabGuard release that upgraded it",
        }.get(exc.code, "check that the database server runs and the instance's database URL")
        yield Finding("database", "failed", f"{exc.message} [{exc.code}]", fix)
        return
    yield Finding("database", "ok", f"reachable, at the code's schema ({require_current_schema(inst.db).code})")


def _certificate(inst: Instance, name: str) -> x509.Certificate | None:
    path = inst.home / "ca" / f"{name}.pem"
    return x509.load_pem_x509_certificate(path.read_bytes()) if path.exists() else None


def _clock(inst: Instance) -> Iterator[Finding]:
    now, problems = inst.clock(), 0
    root = _certificate(inst, "root")
    if root is not None and now < root.not_valid_before_utc:
        problems += 1
        yield Finding(
            "clock",
            "failed",
            f"the clock says {now:%Y-%m-%d %H:%M} UTC, before the root CA began ({root.not_valid_before_utc:%Y-%m-%d})",
            "set the clock (enable NTP: timedatectl set-ntp true)",
        )
    try:
        with inst.db.read() as s:
            newest = s.execute(select(func.max(Event.at))).scalar_one_or_none()
            server_now = None if inst.db.is_sqlite else s.execute(select(func.current_timestamp())).scalar_one()
    except (FabGuardError, SQLAlchemyError):  # the database finding says why; the clock is judged without it
        newest = server_now = None
    if newest is not None:
        newest = newest if newest.tzinfo else newest.replace(tzinfo=now.tzinfo)
        if newest - now > CLOCK_TOLERANCE:
            problems += 1
            yield Finding(
                "clock",
                "failed",
                f"the newest event is dated {newest:%Y-%m-%d %H:%M:%S} UTC, after this clock ({now:%H:%M:%S}): "
                "the clock went back",
                "set the clock (enable NTP); certificates issued now would start before earlier ones",
            )
    if isinstance(server_now, datetime) and abs(server_now - now) > CLOCK_TOLERANCE:
        problems += 1
        yield Finding(
            "clock",
            "warning",
            f"this clock and the database server's differ by {abs(server_now - now).total_seconds():.0f} s",
            "run NTP on both machines",
        )
    if not problems:
        yield Finding("clock", "ok", f"{now:%Y-%m-%d %H:%M:%S} UTC, consistent with the CAs and the event log")


def _urls(inst: Instance, probe: Probe | None) -> Iterator[Finding]:
    config, problems = inst.config, 0
    public_host = urlsplit(config.public_url).hostname or ""
    if not config.public_url.startswith("https://"):
        problems += 1
        yield Finding(
            "urls",
            "failed",
            f"the public URL {config.public_url} is not HTTPS",
            "fabguard config set public-url https://HOST:PORT",
        )
    server = _certificate(inst, "server")
    if server is not None and not config.tls_cert:  # the operator's certificate: the "tls" findings
        try:
            names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            hosts = {str(n) for n in names.get_values_for_type(x509.DNSName)}
            hosts |= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
        except x509.ExtensionNotFound:
            hosts = set()
        if public_host not in hosts:
            problems += 1
            yield Finding(
                "urls",
                "failed",
                f"the server certificate names {', '.join(sorted(hosts)) or 'no host'}, not {public_host} "
                "(the public URL's host): clients will refuse it",
                "make the public URL name a host of the server certificate (fabguard config set public-url URL)",
            )
    for what, url in (("PKI", config.pki_url), ("CRL", config.crl_base_url)):
        if url.startswith("https://"):
            problems += 1
            yield Finding(
                "urls",
                "warning",
                f"the {what} URL {url} is HTTPS: relying parties fetch CRLs and CA certificates over plain HTTP "
                "(RFC 5280), and checking them over TLS can loop",
                "publish them over HTTP (serve --http-port) and fabguard config set pki-url http://HOST:PORT",
            )
    if public_host in ("127.0.0.1", "localhost", "::1"):
        problems += 1
        yield Finding(
            "urls",
            "warning",
            f"the public URL {config.public_url} is loopback: fixtures on other machines cannot reach it",
            "fabguard config set public-url https://HOST:PORT (and a server certificate naming HOST)",
        )
    if probe is not None:
        for url in (f"{config.public_url.rstrip('/')}/livez", f"{config.ca_issuers_base_url.rstrip('/')}/root.crt"):
            why = probe(url)
            if why is not None:
                problems += 1
                yield Finding(
                    "urls",
                    "warning",
                    f"{url} does not answer from here ({why})",
                    "if the server runs, check the network path (firewall, DNS, balancer) from where fixtures are",
                )
    if not problems:
        yield Finding("urls", "ok", f"public {config.public_url}, PKI {config.pki_url}")


def _certificates(inst: Instance) -> Iterator[Finding]:
    now, problems = inst.clock(), 0
    served = () if inst.config.tls_cert else ("server",)  # the operator's: the "tls" findings
    for name in (*CA_FILES, *served):
        cert = _certificate(inst, name)
        if cert is None:
            problems += 1
            yield Finding("certificates", "failed", f"ca/{name}.pem is missing", "restore it from a backup")
            continue
        end, soon = cert.not_valid_after_utc, SOON.get(name, SOON_CA)
        fix = (
            "issue a new server certificate for the public host and restart"
            if name == "server"
            else f"plan its successor now: fabguard ca rotate {name} --new-name NAME"
            if name == "issuing"
            else f"plan a new {name} CA and the move to it"
        )
        if end <= now:
            problems += 1
            yield Finding("certificates", "failed", f"the {name} certificate expired on {end:%Y-%m-%d}", fix)
        elif end - now < soon:
            problems += 1
            days = (end - now).days
            yield Finding(
                "certificates", "warning", f"the {name} certificate expires in {days} days ({end:%Y-%m-%d})", fix
            )
        elif now < cert.not_valid_before_utc:
            problems += 1
            yield Finding(
                "certificates", "failed", f"the {name} certificate is not valid before {cert.not_valid_before_utc}", fix
            )
    if not problems:
        yield Finding("certificates", "ok", "the CA and server certificates are valid and none expires soon")
