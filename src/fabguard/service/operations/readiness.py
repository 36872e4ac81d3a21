"""Whether this process can do its work now, part by part (``GET /readyz``): its database reachable and at
the code's schema, its key store signing with the issuing CA's key. Each check returns nothing or raises
the ``FabGuardError`` that says what is wrong; the route adds the provisioning writer's own check."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy.exc import SQLAlchemyError

from fabguard.domain.errors import FabGuardError, Unavailable
from fabguard.service.core.instance import Instance, require_current_schema

PROBE = b"fabguard readiness probe"


def check_database(inst: Instance) -> None:
    """The database answers and its schema is the code's (``database_unavailable``, ``database_behind_code``...)."""
    try:
        require_current_schema(inst.db)
    except SQLAlchemyError as exc:  # not an outage the store knows (a file that does not open, a refused login)
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Unavailable(f"the database cannot be read: {reason[:200]}") from exc


def check_keys(inst: Instance, ca: str = "issuing") -> None:
    """The key store signs with ``ca``'s key and the signature verifies with its certificate: the key opens
    (passphrase, HSM token and PIN) and is the certificate's. ``key_store_unavailable`` otherwise."""
    try:
        issuer = inst.cas.issuer(ca)
        public = issuer.certificate.public_key()
        if isinstance(issuer.key, ed25519.Ed25519PrivateKey) and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(issuer.key.sign(PROBE), PROBE)
        elif isinstance(issuer.key, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey):
            signed = issuer.key.sign(PROBE, ec.ECDSA(hashes.SHA256()))
            public.verify(signed, PROBE, ec.ECDSA(hashes.SHA256()))
        else:
            raise InvalidSignature("the key is not of the certificate's type")
    except FabGuardError as exc:
        raise FabGuardError(
            f"the {ca} CA's key cannot sign: {exc.message}", code="key_store_unavailable", status=503
        ) from exc
    except Exception as exc:  # an HSM's own errors (python-pkcs11) or a key that is not the certificate's
        raise FabGuardError(
            f"the {ca} CA's key cannot sign: {type(exc).__name__}: {str(exc)[:200]}",
            code="key_store_unavailable",
            status=503,
        ) from exc
