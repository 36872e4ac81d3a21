"""A minimal CycloneDX 1.5 SBOM (JSON) for a firmware release, and a structural check of it.

``cyclonedx-python-lib`` is not a dependency yet, so the document is built and checked here against the
fields CycloneDX 1.5 requires (bomFormat, specVersion) and those we promise (serialNumber, version,
metadata.component, components with SHA-256 hashes). The image itself is the one component we know of;
the OEM's build system is where a full SBOM of the image's contents would come from.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from fabguard.domain.errors import FabGuardError

SPEC_VERSION = "1.5"
_SERIAL = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMPONENT_TYPES = {
    "application",
    "framework",
    "library",
    "container",
    "platform",
    "operating-system",
    "device",
    "device-driver",
    "firmware",
    "file",
    "machine-learning-model",
    "data",
}


class InvalidSbom(FabGuardError, ValueError):
    """The document is not the CycloneDX 1.5 JSON we produce: the server's failure (500). Still a ``ValueError``."""

    code = "sbom_invalid"
    status = 500


def firmware_sbom(
    *,
    product_id: str,
    version: str,
    sha256: str,
    size: int,
    release_id: str,
    supplier: str,
    timestamp: datetime,
    serial_number: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The SBOM of one release: the firmware image as the described component, with its hash."""
    ref = f"firmware:{product_id}@{version}"
    component = {
        "type": "firmware",
        "bom-ref": ref,
        "name": product_id,
        "version": version,
        "supplier": {"name": supplier},
        "hashes": [{"alg": "SHA-256", "content": sha256}],
        "properties": [
            {"name": "fabguard:release_id", "value": release_id},
            {"name": "fabguard:size", "value": str(size)},
        ],
    }
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial_number or uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp.isoformat(),
            "tools": {"components": [{"type": "application", "name": "fabguard"}]},
            "supplier": {"name": supplier},
            "component": component,
        },
        "components": [dict(component, **{"bom-ref": f"{ref}#image"})],
    }


def _component(c: Any, where: str) -> None:
    if not isinstance(c, dict):
        raise InvalidSbom(f"{where} must be an object")
    if c.get("type") not in _COMPONENT_TYPES:
        raise InvalidSbom(f"{where}.type must be a CycloneDX component type")
    if not isinstance(c.get("name"), str) or not c["name"]:
        raise InvalidSbom(f"{where}.name is required")
    for h in c.get("hashes", []):
        if not isinstance(h, dict) or h.get("alg") != "SHA-256" or not _SHA256.match(str(h.get("content", ""))):
            raise InvalidSbom(f"{where}.hashes must be SHA-256 hex digests")


def validate_sbom(doc: Any) -> None:
    """Raise :class:`InvalidSbom` unless ``doc`` has the CycloneDX 1.5 structure we produce."""
    if not isinstance(doc, dict):
        raise InvalidSbom("an SBOM is a JSON object")
    if doc.get("bomFormat") != "CycloneDX":
        raise InvalidSbom("bomFormat must be 'CycloneDX'")
    if doc.get("specVersion") != SPEC_VERSION:
        raise InvalidSbom(f"specVersion must be {SPEC_VERSION!r}")
    if not isinstance(doc.get("serialNumber"), str) or not _SERIAL.match(doc["serialNumber"]):
        raise InvalidSbom("serialNumber must be an RFC 4122 URN (urn:uuid:...)")
    if not isinstance(doc.get("version"), int) or isinstance(doc["version"], bool) or doc["version"] < 1:
        raise InvalidSbom("version must be an integer >= 1")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidSbom("metadata is required")
    try:
        datetime.fromisoformat(str(metadata.get("timestamp")))
    except ValueError:
        raise InvalidSbom("metadata.timestamp must be an ISO 8601 date-time") from None
    _component(metadata.get("component"), "metadata.component")
    components = doc.get("components")
    if not isinstance(components, list) or not components:
        raise InvalidSbom("components must be a non-empty list")
    refs: set[str] = set()
    for i, c in enumerate(components):
        _component(c, f"components[{i}]")
        ref = c.get("bom-ref")
        if ref is not None and (ref in refs or ref == metadata["component"].get("bom-ref")):
            raise InvalidSbom(f"components[{i}].bom-ref is not unique")
        if ref is not None:
            refs.add(ref)


__all__ = ["SPEC_VERSION", "InvalidSbom", "firmware_sbom", "validate_sbom"]
