"""The CAs whose certificates a client may present at the HTTPS handshake (``ca/client-trust.pem``): every CA
of the registry with a certificate (the root, the station CA, the issuing CAs, the site agents' CAs, and the
Matter PAAs: a Matter unit's DAC chains to its vendor's PAA, not to FabGuard's root, and re-enrols over EST
with it). Which certificate may do what is the app's decision, by exact fingerprint (ADR 0001): a DAC of
another maker under the same vendor's PAA gets through the handshake and is refused by the app.

Every server process of a home watches the file and takes a new one for its next handshakes without a
restart (``api.server_tls.ReloadableTLS``): whatever adds a CA to the registry (a lease's agent CA, an
issuing CA made, imported or rotated) writes the file once its transaction committed, and each server's
maintenance round writes it too, for a server on another machine whose home did not see that write.
"""

from __future__ import annotations

import os
import secrets

from sqlalchemy import select

from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority

CLIENT_TRUST = "client-trust.pem"


def client_trust_pems(inst: Instance) -> list[str]:
    """The registry's CA certificates that clients' certificates may chain to, by name."""
    with inst.db.read() as s:
        rows = s.execute(
            select(CertificateAuthority.certificate_pem)
            .where(CertificateAuthority.certificate_pem.is_not(None))
            .order_by(CertificateAuthority.name)
        ).scalars()
        return [str(pem) for pem in rows]


def write_client_trust(inst: Instance) -> None:
    """Write ``ca/client-trust.pem`` if what it should hold changed (whole: a new file moved into place, so a
    server never reads half of it)."""
    path = inst.home / "ca" / CLIENT_TRUST
    text = "".join(client_trust_pems(inst))
    if path.exists() and path.read_text() == text:
        return
    fresh = path.with_name(f".{CLIENT_TRUST}.{secrets.token_hex(4)}")
    fresh.write_text(text)
    os.replace(fresh, path)


__all__ = ["CLIENT_TRUST", "client_trust_pems", "write_client_trust"]
