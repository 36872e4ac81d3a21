"""Finding an instance's CAs: their certificates and keys as issuers, their chains, CRL and certificate addresses.

The registry (the ``certificate_authorities`` table) is the truth; before it is seeded, the root,
issuing and station CAs that ``init`` wrote to ``<home>/ca`` stand in for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import ConfigurationError, Conflict, NotFound
from fabguard.pki import profiles
from fabguard.pki.keystore import KeyStore
from fabguard.store.db import Database
from fabguard.store.models import CertificateAuthority, OcspResponder

# The key reference of a CA whose key this instance does not hold: a site agent's issuing CA on the central
# server, the central root and station CA on an agent. Such a CA signs nothing here (no CRL either).
EXTERNAL_KEY = "external:"
# The key reference of an offline root (``init --offline-root``): its key is at the key ceremony only.
OFFLINE_ROOT_KEY = f"{EXTERNAL_KEY}offline-root"
# On a site agent, the file (in the CA directory) naming where its issuing CA's certificates are published:
# the central server's URLs, and the central status signer that issues their CRL (ADR 0020).
PUBLISHED_ELSEWHERE = "published-elsewhere.json"
# ``<agent CA><suffix>`` names that status signer's certificate where CA certificates are published.
STATUS_SIGNER_SUFFIX = "-status"


class CaRegistry:
    """The CAs of one instance, each with its key from ``keys``; issuers and chains are cached once built.

    The caches need no invalidation: a CA's certificate is written once under its name (``ca import``
    fills a pending CA that had none, rotation makes a new name, revocation changes the registry
    row's state, which issuance reads in its own transaction), and the root file never changes.
    """

    def __init__(
        self,
        db: Database,
        keys: KeyStore,
        ca_directory: Path,
        crl_base_url: str,
        ca_issuers_base_url: str = "",
        ocsp_url: str = "",
    ) -> None:
        self._db = db
        self._keys = keys
        self.directory = ca_directory
        self._crl_base_url = crl_base_url
        self._ca_issuers_base_url = ca_issuers_base_url
        self._ocsp_url = ocsp_url
        self._issuers: dict[str, profiles.Issuer] = {}
        self._chains: dict[str, tuple[str, ...]] = {}
        self._root: x509.Certificate | None = None
        self._elsewhere: dict[str, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def cert_path(self, name: str) -> Path:
        """The PEM file ``init`` wrote for ``name`` (root, issuing, station, server)."""
        return self.directory / f"{name}.pem"

    def certificate(self, name: str) -> x509.Certificate:
        """The certificate in the instance's file for ``name``."""
        return x509.load_pem_x509_certificate(self.cert_path(name).read_bytes())

    def published_elsewhere(self, ca: str) -> dict[str, str]:
        """Where another instance publishes for ``ca`` (a site agent's issuing CA: the central server), from
        ``PUBLISHED_ELSEWHERE``; empty where this instance publishes itself."""
        if self._elsewhere is None:
            path = self.directory / PUBLISHED_ELSEWHERE
            self._elsewhere = json.loads(path.read_text()) if path.exists() else {}
        return self._elsewhere.get(ca, {})

    def crl_url(self, ca: str) -> str:
        """Where the CRL of ``ca`` is published; certificates name it in CRL Distribution Points."""
        return self.published_elsewhere(ca).get("crl_url") or f"{self._crl_base_url}/{ca}.crl"

    def crl_issuer(self, ca: str) -> x509.Name | None:
        """Who signs the CRL of ``ca``'s certificates when not ``ca`` itself (on a site agent: the central
        status signer its CA certified, ADR 0020); certificates name it in their distribution point."""
        signer = self.published_elsewhere(ca).get("crl_issuer_certificate")
        return (
            None if signer is None else x509.load_pem_x509_certificate((self.directory / signer).read_bytes()).subject
        )

    def ca_issuers_url(self, ca: str) -> str | None:
        """Where the certificate of ``ca`` is published (DER); certificates it signs name it in Authority
        Information Access (caIssuers)."""
        elsewhere = self.published_elsewhere(ca).get("ca_issuers_url")
        if elsewhere:
            return elsewhere
        return f"{self._ca_issuers_base_url}/{ca}.crt" if self._ca_issuers_base_url else None

    def ocsp_url(self, ca: str) -> str | None:
        """Where the OCSP responder answers for certificates ``ca`` signs (one URL for every CA: a request
        names its CA by hashes); certificates name it in Authority Information Access (OCSP)."""
        return self.published_elsewhere(ca).get("ocsp_url") or self._ocsp_url or None

    def published_certificate(self, name: str) -> bytes:
        """``name``'s certificate (DER) as the caIssuers URL serves it: any CA of the registry that has one, and
        ``<agent CA>-status``, the status signer a site agent's CA certified here (ADR 0020)."""
        with self._db.read() as s:
            row = s.get(CertificateAuthority, name)
            if row is None and name.endswith(STATUS_SIGNER_SUFFIX):
                agent_ca = name.removesuffix(STATUS_SIGNER_SUFFIX)
                signer = s.execute(
                    select(OcspResponder.certificate_pem)
                    .join(CertificateAuthority, CertificateAuthority.name == OcspResponder.ca)
                    .where(OcspResponder.ca == agent_ca, CertificateAuthority.role == "agent")
                    .order_by(OcspResponder.not_after.desc())
                    .limit(1)
                ).scalar_one_or_none()
                if signer is not None:
                    return x509.load_pem_x509_certificate(signer.encode()).public_bytes(serialization.Encoding.DER)
        if row is None or not row.certificate_pem:
            raise NotFound(f"no CA {name[:80]!r} with a certificate here", code="ca_not_found")
        return x509.load_pem_x509_certificate(row.certificate_pem.encode()).public_bytes(serialization.Encoding.DER)

    def issuer(self, name: str, session: Session | None = None) -> profiles.Issuer:
        """A CA of the registry (or, before it is seeded, of the instance files), with its key.

        Inside a transaction, pass its session: taking a second pooled connection while holding the
        write lock could wait on a pool that the lock's waiters have exhausted.
        """
        with self._lock:
            cached = self._issuers.get(name)
        if cached is not None:
            return cached
        cert, key_ref = self._entry(name, session)
        if key_ref.startswith(EXTERNAL_KEY):
            raise Conflict(
                f"CA {name}'s key is not on this server (an offline root, or another instance's CA): "
                "what it signs is signed at a ceremony (docs/ceremony.md)",
                code="ca_key_offline",
            )
        issuer = profiles.Issuer(cert, self._keys.load(key_ref))
        with self._lock:
            self._issuers[name] = issuer
        return issuer

    def certificate_pem(self, name: str, session: Session | None = None) -> str:
        """``name``'s own certificate, PEM, without loading its key (which may be held elsewhere)."""
        cert, _ = self._entry(name, session)
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def root_issuer(self) -> profiles.Issuer:
        return self.issuer("root")

    def chain_pem(self, name: str, session: Session | None = None) -> list[str]:
        """``name``'s certificate followed by its parent (the root, or e.g. a Matter PAI's PAA), PEM."""
        with self._lock:
            cached = self._chains.get(name)
        if cached is None:
            cached = tuple(self._build_chain(name, session))
            with self._lock:
                self._chains[name] = cached
        return list(cached)

    def _root_certificate(self) -> x509.Certificate:
        if self._root is None:
            self._root = self.certificate("root")
        return self._root

    def _build_chain(self, name: str, session: Session | None) -> list[str]:
        cert = self.issuer(name, session).certificate
        root = self._root_certificate()
        if cert.issuer == root.subject or cert.issuer == cert.subject:
            parent = root if cert.issuer != cert.subject else cert
        else:  # e.g. a Matter PAI under its PAA
            parent = self._parent(cert, session)
        chain = [cert] if parent is cert else [cert, parent]
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]

    @contextmanager
    def _session(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
            return
        with self._db.read() as s:
            yield s

    def _entry(self, name: str, session: Session | None) -> tuple[x509.Certificate, str]:
        with self._session(session) as s:
            row = s.get(CertificateAuthority, name)
        if row is not None and row.certificate_pem:
            return x509.load_pem_x509_certificate(row.certificate_pem.encode()), row.key_ref
        if row is None and self.cert_path(name).exists():
            return self.certificate(name), f"file:{name}"
        raise ConfigurationError(
            f"CA {name} has no certificate yet (an offline root's CA: 'fabguard init --import-ceremony DIR')"
        )

    def _parent(self, cert: x509.Certificate, session: Session | None) -> x509.Certificate:
        with self._session(session) as s:
            for pem in s.execute(
                select(CertificateAuthority.certificate_pem).where(CertificateAuthority.certificate_pem.is_not(None))
            ).scalars():
                candidate = x509.load_pem_x509_certificate(str(pem).encode())
                if candidate.subject == cert.issuer:
                    return candidate
        raise ConfigurationError(f"no CA in the registry issued {cert.subject.rfc4514_string()}")
