"""What a site agent sends to get a quota lease (``fabguard agent prepare``'s request file), parsed once
where it comes in: the API's body, or the CLI's file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import InvalidRequest
from fabguard.ledger.checkpoint import CheckpointError, parse_verifier_key


@dataclass(frozen=True)
class AgentRequest:
    """The CSRs of the agent's issuing and TLS keys (each proving possession), its host names and ledger
    verifier key, and the request as it was sent (JSON), which a pending lease request keeps."""

    site_id: str
    hostnames: tuple[str, ...]
    ca_csr: x509.CertificateSigningRequest
    server_csr: x509.CertificateSigningRequest
    ledger_key: str
    text: str

    @classmethod
    def from_json(cls, data: Any, text: str | None = None) -> AgentRequest:
        """The request in ``data`` (parsed JSON; ``text``, its JSON as sent, defaults to ``data`` dumped)."""
        try:
            site_id, hostnames = str(data["site_id"]), tuple(str(h) for h in data["hostnames"])
            csrs = [x509.load_pem_x509_csr(str(data[k]).encode()) for k in ("ca_csr", "server_csr")]
            ledger_key = str(data["ledger_key"])
            parse_verifier_key(ledger_key)
        except (ValueError, KeyError, TypeError, CheckpointError) as exc:
            raise InvalidRequest(f"not an agent request: {exc}", code="agent_request_invalid") from None
        for csr in csrs:
            if not csr.is_signature_valid or not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
                raise InvalidRequest("each CSR must be an EC key's, self-signed", code="agent_request_invalid")
        if not hostnames or csrs[0].public_key() == csrs[1].public_key():
            raise InvalidRequest("an agent names its host and uses two different keys", code="agent_request_invalid")
        return cls(site_id, hostnames, csrs[0], csrs[1], ledger_key, json.dumps(data) if text is None else text)


def parse_agent_request(text: str) -> AgentRequest:
    """Read ``fabguard agent prepare``'s request file, checking each CSR's proof of possession."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"not an agent request: {exc}", code="agent_request_invalid") from None
    return AgentRequest.from_json(data, text)


__all__ = ["AgentRequest", "parse_agent_request"]
