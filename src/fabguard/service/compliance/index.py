"""The index of a CRA evidence pack: which part evidences which requirement of Annex I.

References are to Annex I of Regulation (EU) 2024/2847 (the Cyber Resilience Act): Part I, point (2)
lists the product properties (a)-(m); Part II lists the manufacturer's vulnerability handling
requirements (1)-(8). Where a part also serves a point outside Annex I (the support period of
Article 13(8), the user information of Annex II) it says so under ``see_also``. The pack is evidence
for these requirements, not a claim that a product meets them.
"""

from __future__ import annotations

from collections.abc import Mapping

# The CRA facts products.json carries per product; a pack without one of them is made only on request.
COMPLIANCE_FIELDS = ("support_until", "vulnerability_contact")

REGULATION = "Regulation (EU) 2024/2847 (Cyber Resilience Act), Annex I"

ANNEX_I_INDEX: dict[str, object] = {
    "regulation": REGULATION,
    "parts": [
        {
            "part": "certificates/",
            "what": "every device certificate with its status (active, revoked with reason, expired)",
            "requirements": ["Annex I Part I (2)(d)", "Annex I Part II (2)"],
            "how": "each unit authenticates with its own certificate, issued only under a production order's "
            "quota after a passing test; a compromised identity is revoked and published in the CRL",
        },
        {
            "part": "history.jsonl",
            "what": "issuance, re-enrolment, revocation, CA and firmware events, each with an inclusion "
            "proof against the signed checkpoint",
            "requirements": ["Annex I Part I (2)(f)", "Annex I Part I (2)(l)"],
            "how": "the ledger records every change to device identities and releases in an append-only "
            "Merkle tree; the proofs tie each entry to the checkpoint",
        },
        {
            "part": "ca/",
            "what": "the CA hierarchy: subject, key algorithm, validity and where each CA key lives",
            "requirements": ["Annex I Part I (2)(d)", "Annex I Part I (2)(e)"],
            "how": "CA keys are held in an HSM (PKCS#11, non-extractable) or passphrase-encrypted at rest",
        },
        {
            "part": "firmware/",
            "what": "per firmware release its CycloneDX SBOM (schema-validated) and its signed manifest",
            "requirements": [
                "Annex I Part II (1)",
                "Annex I Part II (7)",
                "Annex I Part I (2)(c)",
                "Annex I Part I (2)(f)",
            ],
            "how": "an SBOM in a machine-readable format per release; releases are signed, encrypted "
            "to one device and offered only to provisioned, unrevoked units",
        },
        {
            "part": "products.json",
            "what": "per product the end of its support period and its vulnerability contact",
            "requirements": ["Annex I Part II (5)", "Annex I Part II (6)"],
            "see_also": ["Article 13(8)", "Annex II (2)", "Annex II (7)"],
            "how": "the contact address for reporting vulnerabilities, and the period in which they are handled",
        },
        {
            "part": "manifest.json",
            "what": "SHA-256 of every file, signed with the ledger key and bound to the checkpoint",
            "requirements": ["Annex I Part I (2)(f)"],
            "how": "the pack's own integrity: any change to a file breaks the signed manifest",
        },
    ],
}


def missing_facts(products: list[dict[str, object]]) -> dict[str, list[str]]:
    """Per product of ``products.json`` that lacks any, the CRA facts it lacks (in ``COMPLIANCE_FIELDS`` order)."""
    missing = {str(p["id"]): [f for f in COMPLIANCE_FIELDS if not p.get(f)] for p in products}
    return {pid: fields for pid, fields in missing.items() if fields}


def pack_index(incomplete: Mapping[str, list[str]]) -> dict[str, object]:
    """The pack's ``index.json``: the Annex I index, and, when the pack was made with ``--allow-incomplete``
    for products lacking CRA facts, that record (``fabguard audit verify`` reports it as a note)."""
    if not incomplete:
        return ANNEX_I_INDEX
    return {
        **ANNEX_I_INDEX,
        "incomplete": {
            "allowed_by": "--allow-incomplete",
            "products": {pid: list(fields) for pid, fields in sorted(incomplete.items())},
            "note": "these products have no support period or vulnerability contact in products.json (null): "
            "the pack is no evidence of Annex I Part II (5) and (6) for them",
        },
    }
