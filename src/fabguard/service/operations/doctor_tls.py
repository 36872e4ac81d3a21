"""``fabguard doctor``'s look at the operator's certificate for the HTTPS listener (``fabguard config tls``):
the files readable and private, the key opening and matching, the chain in order, the certificate valid
and not about to expire, its names covering the public URL's host, and a CA for fixtures to trust."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from fabguard.domain.errors import FabGuardError
from fabguard.pki.server_tls import ServerCredentials
from fabguard.service.core import server_tls
from fabguard.service.core.config import InstanceConfig

SOON = timedelta(days=30)
FIX_FILES = "fabguard config tls --cert CHAIN.pem --key KEY.pem [--key-passphrase-file F] (then kill -HUP the server)"
Status = Literal["ok", "warning", "failed"]
Judged = tuple[Status, str, str | None]  # status, message, fix


def examine_operator_tls(config: InstanceConfig, now: datetime) -> Iterator[Judged]:
    """Findings about the operator's certificate; none if the listener serves the certificate ``init``
    made (the doctor's other checks cover that one)."""
    files = server_tls.operator_files(config)
    if files is None:
        return
    problems = 0
    if files.key is not None and files.key.exists() and stat.S_IMODE(files.key.stat().st_mode) & 0o077:
        problems += 1
        yield ("failed", f"{files.key} is readable by others", f"chmod 600 {files.key}")
    try:
        credentials = server_tls.read_credentials(files)
        trust = server_tls.client_trust_pems(files)
    except FabGuardError as exc:
        yield ("failed", f"the HTTPS certificate cannot be served: {exc.message} [{exc.code}]", FIX_FILES)
        return
    for status, message, fix in _judge(credentials, config, now):
        problems += 1
        yield (status, message, fix)
    if not trust:
        problems += 1
        yield (
            "warning",
            f"{files.cert} ends with no self-signed CA and no --ca is named: fixtures enrolled now get only "
            "FabGuard's station chain and cannot verify this certificate",
            "fabguard config tls ... --ca YOUR-CA.pem",
        )
    if not problems:
        where = f", its key in the HSM at {files.pkcs11_key} (loaded and matched by serve)" if files.pkcs11_key else ""
        yield ("ok", f"the HTTPS listener serves the operator's certificate: {credentials.describe()}{where}", None)


def _judge(credentials: ServerCredentials, config: InstanceConfig, now: datetime) -> Iterator[Judged]:
    leaf = credentials.leaf
    end = leaf.not_valid_after_utc
    if end <= now:
        yield "failed", f"the HTTPS certificate expired on {end:%Y-%m-%d}: clients refuse it", FIX_FILES
    elif now < leaf.not_valid_before_utc:
        yield "failed", f"the HTTPS certificate is not valid before {leaf.not_valid_before_utc}", FIX_FILES
    elif end - now < SOON:
        yield "warning", f"the HTTPS certificate expires in {(end - now).days} days ({end:%Y-%m-%d})", FIX_FILES
    host = urlsplit(config.public_url).hostname or ""
    if not credentials.covers(host):
        names = ", ".join(sorted(credentials.names)) or "no host (no subjectAltName)"
        yield (
            "failed",
            f"the HTTPS certificate names {names}, not {host} (the public URL's host): clients will refuse it",
            "a certificate whose subjectAltName holds the public host, or fabguard config set public-url URL",
        )


__all__ = ["examine_operator_tls"]
