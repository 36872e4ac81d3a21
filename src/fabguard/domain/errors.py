"""One error hierarchy for FabGuard, and every code it sends.

Every error carries a stable machine-readable ``code``, an HTTP ``status`` and a human message.
The API renders them as ``{"error": {"code": ..., "message": ...}}``; the CLI prints the message.
Every code is declared below, once: a refusal code in ``REFUSAL_STATUS`` or
``FIRMWARE_REFUSAL_STATUS``, any other code in ``ERROR_STATUS`` (a test checks that the source
raises no other code and that docs/api.md lists each one).
"""

from __future__ import annotations

from typing import Any

# Refusal codes a fixture can meet while provisioning, with the HTTP status each maps to.
# These strings are part of the public API: never rename one.
REFUSAL_STATUS: dict[str, int] = {
    "unauthorized": 401,
    "unknown_fixture": 401,
    "fixture_revoked": 403,
    "wrong_site": 403,
    "order_not_found": 404,
    "order_inactive": 409,
    "order_expired": 409,
    "order_not_yet_valid": 409,
    "quota_exhausted": 409,
    "csr_invalid": 400,
    "key_type_not_allowed": 400,
    "serial_invalid": 400,
    "serial_mismatch": 400,
    "test_missing": 409,
    "test_failed": 409,
    "key_reused": 409,
    "serial_has_other_key": 409,
    "unit_revoked": 409,
    "issuing_ca_revoked": 409,
    "rate_limited": 429,  # the fixture sends faster than Limits.fixture_requests_per_second
    # Key attestation (the product's attestation policy, pki/attestation):
    "attestation_missing": 403,  # required, and the request carries none
    "attestation_invalid": 400,  # malformed, does not verify, or about another key or request (replayed)
    "attestation_untrusted": 403,  # verifies, but its chain does not vouch: no trusted root, or a certificate unfit
    # Identity pools per product and their allocation to units (domain/identities/allocation.py).
    "identity_pool_exhausted": 409,  # the product's serial range or MAC block has no unit left
    "identity_pool_missing": 409,  # the product declares no identity pool to allocate from
    "serial_not_allocated": 409,  # the product asks for allocated serials and this one was not allocated to the order
    "serial_already_allocated": 409,  # a station-chosen serial already allocated to another order
    "allocation_serial_invalid": 422,  # a serial sent where the pool draws it, or none where the station must
    "matter_ids_mismatch": 409,  # a Matter pool and PAI (so QR code and DAC) name another vendor or product
}

# Refusal codes a fixture can meet while fetching firmware, with their HTTP status.
# These strings are part of the public API: never rename one.
FIRMWARE_REFUSAL_STATUS: dict[str, int] = {
    "release_not_found": 404,
    "order_not_found": 404,
    "wrong_site": 403,
    "order_inactive": 409,
    "unit_not_provisioned": 409,
    "unit_revoked": 409,
    "unit_key_unsupported": 409,
    "release_withdrawn": 409,
    "release_not_approved": 409,
    "release_not_attached": 409,
    "release_wrong_product": 409,
}

# Every other code, with the HTTP status it is sent with. Also part of the public API: never rename
# one. A refusal code may also answer an admin call (``order_not_found``, ``fixture_revoked``...): it
# is declared once, above.
ERROR_STATUS: dict[str, int] = {
    # The classes below, when no more precise code is given.
    "invalid_request": 422,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "configuration_error": 500,
    # The HTTP layer: a body that is not JSON or too large, a method a route does not have, a bug.
    "malformed_json": 400,
    "idempotency_key_invalid": 400,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "headers_too_large": 431,
    "malformed_request": 400,  # not HTTP/1.1 that h11 can read
    # OCSP (RFC 6960): what is not a request the responder reads; sent as an OCSP malformedRequest response.
    "ocsp_request_malformed": 400,
    "request_timeout": 408,  # the body did not arrive within the limit
    "http_error": 400,  # any other HTTP-level error: sent with that error's own status
    "internal_error": 500,
    # The database cannot be reached or cannot take writes now (a failover, a restart): send again.
    "database_unavailable": 503,
    # The server process's provisioning writer died (a bug): it decides nothing until it is restarted.
    "provisioning_writer_down": 503,
    "field_writer_down": 503,  # this server process's field-check writer has stopped (runtime.field_writer)
    # The database's schema is not the code's (nothing migrates on its own: 'fabguard db upgrade').
    "database_behind_code": 503,  # an older schema: back it up, then 'fabguard db upgrade'
    "database_ahead_of_code": 503,  # upgraded by a newer FabGuard: run that release
    # /readyz: the key store does not sign with the issuing CA's key (an HSM gone, a key that does not open).
    "key_store_unavailable": 503,
    # Values that break a documented rule or limit.
    "invalid_CA_name": 422,
    "invalid_fixture_id": 422,
    "invalid_order_id": 422,
    "invalid_product_id": 422,
    "invalid_site_id": 422,
    "invalid_format": 422,
    "invalid_index": 422,
    "invalid_note": 422,
    "invalid_quota": 422,
    "invalid_reason": 422,
    "invalid_state": 422,
    "invalid_support_period": 422,
    "invalid_vulnerability_contact": 422,
    "invalid_time": 422,
    "invalid_tree_size": 422,
    "invalid_window": 422,
    "ambiguous_serial": 422,
    "batch_too_large": 422,
    "idempotency_key_reused": 422,
    "ca_is_root": 422,
    "certificate_invalid": 422,
    "certificate_key_mismatch": 422,
    "certificate_not_ca": 422,
    "certificate_untrusted": 422,
    # The HTTPS listener's own certificate (fabguard config tls): a file missing, not PEM, or a key that does
    # not open with its passphrase (a certificate not matching its key is certificate_key_mismatch).
    "server_tls_unreadable": 422,
    # An offline root's ceremonies (docs/ceremony.md).
    "ceremony_bundle_invalid": 422,  # not a bundle FabGuard wrote, incomplete, or a CSR that is not as its manifest says
    "ceremony_profile_mismatch": 422,  # a certificate that is not the profile asked for (subject, pathLen 0, key usage)
    "crl_invalid": 422,  # a CRL not signed by the root, not newer than the one served, or leaving out a revoked CA
    "est_label_required": 400,
    "image_invalid": 422,
    "image_too_large": 413,
    "matter_attestation_invalid": 422,
    "notes_invalid": 422,
    "reason_invalid": 422,
    "test_record_invalid": 422,
    # A test record in a line's own format (ATML, TestStand XML, JUnit XML, CSV: domain/testformats).
    "test_record_format_invalid": 422,  # malformed: the message names the line or element at fault
    "test_record_format_unknown": 422,  # not one of the formats read, or not the one named
    "test_record_too_large": 413,  # over the size, depth, element, step or measurement limits
    # A station's own file posted as it is (POST /api/v1/test-records with an XML or CSV media type).
    "unsupported_media_type": 415,  # not JSON, XML or CSV
    "time_zone_invalid": 422,  # the station's time zone is not an IANA name (Europe/Berlin)
    "token_expiry_invalid": 422,
    "token_required": 422,
    "token_site_invalid": 422,
    "version_invalid": 422,
    # Hand-off to device clouds: the codes the clouds gave, and names they accept.
    "registration_code_invalid": 422,
    "verification_code_invalid": 422,
    "role_arn_invalid": 422,
    "dps_name_invalid": 422,
    # Credentials that are not accepted (the fixture refusals ``unauthorized``... are above).
    "enrollment_token_invalid": 401,
    "unknown_device": 401,
    "same_approver": 403,
    # People (docs/roles.md): dual control compares the people behind tokens.
    "same_person": 403,  # another token of the requester's person, or of the person who made the requester's token
    "person_not_found": 404,
    "token_not_found": 404,
    "person_exists": 409,
    "person_invalid": 422,
    "person_lacks_role": 409,  # a token may carry only a role its person holds
    "person_has_role": 409,
    "person_suspended": 409,
    # Something named that does not exist.
    "alert_not_found": 404,
    "approval_not_found": 404,
    "ca_not_found": 404,
    "fixture_not_found": 404,
    "product_not_found": 404,
    "attestation_root_not_found": 404,
    "quota_change_not_found": 404,
    "site_not_found": 404,
    "unit_not_found": 404,
    # A state that does not allow the request.
    "approval_decided": 409,
    "approval_expired": 409,
    "ca_exists": 409,
    "ca_not_active": 409,
    "ca_not_pending": 409,
    "ca_key_offline": 409,  # the CA's key is not here (an offline root): what it signs is signed at a ceremony
    "root_not_offline": 409,  # a ceremony step asked of an instance whose root key is on the server
    "ca_revoked": 409,
    "ca_not_issuing": 409,
    "order_not_under_ca": 409,
    "crl_contention": 409,
    "fixture_exists": 409,
    "idempotency_key_in_progress": 409,
    "no_issuing_ca": 409,
    "order_closed": 409,
    "order_exists": 409,
    "order_not_suspended": 409,
    "product_exists": 409,
    "attestation_root_exists": 409,
    "quota_below_used": 409,
    "quota_change_decided": 409,
    "release_already_approved": 409,
    "release_already_attached": 409,
    "release_exists": 409,
    "site_exists": 409,
    # Royalties: a rate that is not exact decimal money, or that would reach back into a past period.
    "invalid_rate": 422,
    "invalid_currency": 422,
    "rate_retroactive": 422,
    # Feature licences: what a licence may say.
    "invalid_feature": 422,
    "licence_expiry_invalid": 422,
    # The ledger: a proof, a checkpoint or an export that does not verify.
    "proof_invalid": 422,
    "checkpoint_invalid": 422,
    "audit_failed": 422,
    # Key rotation (issue 25): the ledger's chain of checkpoint keys, and products' licence signers.
    "ledger_key_chain_invalid": 422,
    "key_rotation_in_progress": 409,  # a rotation's overlap is open: finish it before starting another
    "no_key_rotation": 409,  # nothing to finish: only one key signs
    "licence_signer_not_found": 404,
    "licence_signer_pending": 409,  # an offline root's signer waiting for its ceremony: no certificate yet
    # Cosigned checkpoints: a witness refusing a checkpoint, a cosignature or witness key that is not right.
    "cosignature_invalid": 422,
    "witness_key_invalid": 422,
    "witness_fork": 409,
    "witness_rollback": 409,
    "witness_old_size": 409,
    "witness_proof_invalid": 422,
    "witness_wrong_log": 404,
    "witness_request_invalid": 422,
    "witness_state_invalid": 422,
    "witness_unknown": 403,
    "witness_exists": 409,
    "checkpoint_not_found": 404,
    # A GET never writes (issue 23): what a read needs and only a POST (or init) makes.
    "checkpoint_required": 409,  # a signed document binds to a stored checkpoint: none, or none covering the period
    "firmware_key_not_found": 404,  # an instance made before init made the firmware key, with no release yet
    # Firmware: an MCUboot image that is not right; the server's own sealed material or SBOM failing
    # its checks, or imgtool failing, is the server's fault (500).
    "mcuboot_image_invalid": 422,
    "mcuboot_decrypt_failed": 422,
    "imgtool_failed": 500,
    "firmware_envelope_invalid": 500,
    "sbom_invalid": 500,
    "uploaded_sbom_invalid": 422,  # an OEM's SBOM uploaded with a release is not valid CycloneDX
    "uploaded_sbom_mismatch": 422,  # ... or does not describe the image by its SHA-256
    # The key backend.
    "key_not_extractable": 500,
    # Backup and restore: a backup that is not whole, a target that is not empty, a peer tool failing.
    "backup_invalid": 422,
    "backup_incomplete": 422,
    "backup_tampered": 422,
    "backup_engine_mismatch": 422,
    "backup_target_exists": 409,
    "restore_target_exists": 409,
    "pack_target_exists": 409,  # fabguard compliance export never writes into a directory with files
    # fabguard compliance export: a product without its support period or vulnerability contact (named in
    # the message) makes no evidence pack, unless --allow-incomplete, which the pack's signed index records.
    "product_compliance_incomplete": 409,
    "export_target_exists": 409,  # fabguard ledger export writes only into a new or empty directory
    "output_path_unsafe": 409,  # a file an export or hand-off writes would land outside its folder (a link)
    "backup_failed": 500,
    "restore_failed": 500,
    # Field checks (a not-genuine device is a 200 verdict, not one of these): the caller's input.
    "nonce_invalid": 422,
    "nonce_unknown": 404,
    "nonce_expired": 409,
    "nonce_used": 409,
    "field_chain_invalid": 422,
    "field_signature_malformed": 422,
    "field_source_invalid": 422,
    "field_batch_invalid": 422,  # a batch of field answers or challenges: empty, or over Limits.max_field_batch
    # Quota leases for offline site agents; an agent's sync that does not verify or fit (ledger.agent_sync).
    "lease_invalid": 422,
    "lease_units_invalid": 422,
    "agent_request_invalid": 422,
    "lease_not_found": 404,
    "lease_exceeds_quota": 409,
    "lease_order_unsupported": 409,
    "lease_discrepancy": 409,
    "lease_sync_invalid": 422,
    "lease_sync_tampered": 422,
    "lease_sync_forked": 409,
    "lease_sync_replayed": 409,
    "lease_units_beyond": 409,
    "lease_not_final": 409,  # closing a lease (ledger.lease_end, ADR 0022) before its agent's final log is synced
    "lease_closed": 409,  # a second close, or a sync of a closed lease (recorded and alerted: overproduction)
    # Unique identities the OEM allocates (domain/identities, pki/matter/onboarding, labels): a serial
    # format, MAC block, Matter onboarding value or label that breaks its rule; a pool with none left.
    "invalid_serial_format": 422,
    "serial_not_in_format": 422,
    "serial_range_exhausted": 409,
    "invalid_mac_block": 422,
    "mac_block_exhausted": 409,
    "invalid_setup_passcode": 422,
    "invalid_matter_onboarding": 422,
    "invalid_label": 422,
    # A product's identity pools (domain/identities/pools.py): a declaration that breaks a rule, or a
    # change to pools that have already given identities out.
    "invalid_identity_pool": 422,
    "identity_pool_in_use": 409,
    "identity_pool_not_found": 404,
    # The dashboard: unit search, and a browser session's request from another origin (CSRF).
    "invalid_serial_query": 422,
    "cross_origin_refused": 403,
    # The CLI through --server (cli/remote.py): a command that needs the instance directory itself; a server
    # that does not answer (never sent by the API: the CLI's own codes for what it meets).
    "needs_instance": 422,
    "server_unavailable": 503,
}


def is_declared(code: str) -> bool:
    return code in REFUSAL_STATUS or code in FIRMWARE_REFUSAL_STATUS or code in ERROR_STATUS


class FabGuardError(Exception):
    """Root of every error FabGuard raises on purpose."""

    code: str = "error"
    status: int = 400

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A class that names its own code names a declared one: checked once, when the class is made.
        if "code" in cls.__dict__ and not is_declared(cls.code):
            raise TypeError(f"{cls.__qualname__}.code {cls.code!r} is not declared in fabguard.domain.errors")

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def __str__(self) -> str:
        return self.message


class Refusal(FabGuardError):
    """A decision against a fixture's request: recorded as an event, consumes nothing."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REFUSAL_STATUS:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(message, code=code, status=REFUSAL_STATUS[code])


class InvalidRequest(FabGuardError):
    """The request is malformed or breaks a documented limit."""

    code = "invalid_request"
    status = 422


class NotFound(FabGuardError):
    code = "not_found"
    status = 404


class Conflict(FabGuardError):
    code = "conflict"
    status = 409


class Unauthorized(FabGuardError):
    code = "unauthorized"
    status = 401


class Forbidden(FabGuardError):
    code = "forbidden"
    status = 403


class Unavailable(FabGuardError):
    """A passing outage (the database unreachable or read-only): nothing was done; the same request may be
    sent again. ``contended``: a deadlock or serialization failure, which the same work may pass at once."""

    code = "database_unavailable"
    status = 503

    def __init__(self, message: str, *, contended: bool = False) -> None:
        super().__init__(message)
        self.contended = contended


class SchemaMismatch(FabGuardError):
    """The database's schema is not at the code's revision: nothing was done (``code`` says which way)."""

    code = "database_behind_code"
    status = 503


class ConfigurationError(FabGuardError):
    """The instance or its environment is not set up as needed (missing passphrase, no instance...)."""

    code = "configuration_error"
    status = 500
