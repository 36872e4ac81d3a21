"""The CycloneDX SBOM (JSON) of a firmware release, built and schema-validated with ``cyclonedx-python-lib``.

A release's SBOM is CycloneDX 1.6: the firmware image is the described component (``metadata.component``)
and, as ``#image``, the one component it depends on, each with its SHA-256 hash; the OEM's build system
is where a full SBOM of the image's contents would come from. :func:`validate_sbom` checks any document
against the official CycloneDX JSON schema of the version it declares (1.2 to 1.7), offline: the schemas
ship inside the library. An OEM may upload its build's own SBOM of the image instead
(:func:`accept_uploaded_sbom`): it must be valid and describe the image by its SHA-256.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion

if TYPE_CHECKING:
    from cyclonedx.validation.json import JsonStrictValidator

from fabguard import __version__
from fabguard.domain.errors import FabGuardError, InvalidRequest

SPEC_VERSION = "1.6"
_VALIDATORS: dict[SchemaVersion, JsonStrictValidator] = {}


class InvalidSbom(FabGuardError, ValueError):
    """The document is not valid CycloneDX JSON: for the SBOMs we make, the server's failure (500).
    Still a ``ValueError``."""

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
    maker = OrganizationalEntity(name=supplier)

    def image(bom_ref: str) -> Component:
        return Component(
            type=ComponentType.FIRMWARE,
            name=product_id,
            version=version,
            bom_ref=bom_ref,
            supplier=maker,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256)],
            properties=[
                Property(name="fabguard:release_id", value=release_id),
                Property(name="fabguard:size", value=str(size)),
            ],
        )

    described, content = image(ref), image(f"{ref}#image")
    metadata = BomMetaData(component=described, supplier=maker, timestamp=timestamp)
    metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="fabguard", version=__version__))
    bom = Bom(serial_number=serial_number or uuid.uuid4(), version=1, metadata=metadata, components=[content])
    bom.register_dependency(described, [content])
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    return doc


def accept_uploaded_sbom(doc: Any, *, sha256: str) -> dict[str, Any]:
    """An SBOM the OEM's build made for an image: valid CycloneDX whose described component
    (``metadata.component``) carries the image's SHA-256. A bad one is the uploader's error (422)."""
    try:
        validate_sbom(doc)
    except InvalidSbom as exc:
        raise InvalidRequest(f"the uploaded SBOM is refused: {exc.message}", code="uploaded_sbom_invalid") from None
    described = (doc.get("metadata") or {}).get("component") or {}
    hashes = {(h.get("alg"), str(h.get("content", "")).lower()) for h in described.get("hashes") or []}
    if ("SHA-256", sha256) not in hashes:
        raise InvalidRequest(
            "the uploaded SBOM does not describe this image: its metadata.component needs the image's SHA-256 "
            f"({sha256}) among its hashes",
            code="uploaded_sbom_mismatch",
        )
    accepted: dict[str, Any] = doc
    return accepted


def _validator(version: SchemaVersion) -> JsonStrictValidator:
    # Loading a schema (and its referenced ones) takes tens of milliseconds: once per version per process.
    # Lazy for start-up cost: the validator pulls in jsonschema, whose rfc3987 grammar compiles on import
    # (0.8 s that every ``fabguard`` command paid, SBOM or not).
    from cyclonedx.validation.json import JsonStrictValidator

    if version not in _VALIDATORS:
        _VALIDATORS[version] = JsonStrictValidator(version)
    return _VALIDATORS[version]


def validate_sbom(doc: Any) -> None:
    """Raise :class:`InvalidSbom` unless ``doc`` is valid against the CycloneDX JSON schema it declares."""
    if not isinstance(doc, dict):
        raise InvalidSbom("an SBOM is a JSON object")
    if doc.get("bomFormat") != "CycloneDX":
        raise InvalidSbom("bomFormat must be 'CycloneDX'")
    declared = doc.get("specVersion")
    try:
        version = SchemaVersion.from_version(str(declared))
    except (ValueError, KeyError):
        raise InvalidSbom(f"specVersion {declared!r} is not a CycloneDX version") from None
    if version < SchemaVersion.V1_2:
        raise InvalidSbom(f"CycloneDX {declared} has no JSON schema (JSON began with 1.2)")
    error = _validator(version).validate_str(json.dumps(doc))
    if error is not None:
        failure = error.data
        where = "/".join(str(p) for p in getattr(failure, "absolute_path", ())) or "(document)"
        message = str(getattr(failure, "message", failure))
        raise InvalidSbom(f"not valid CycloneDX {declared} at {where}: {message[:300]}")
    _unique_refs(doc)


def _unique_refs(doc: dict[str, Any]) -> None:
    """The specification asks bom-refs to be unique in a BOM; the schema cannot say so."""
    metadata = doc.get("metadata") or {}
    described = [metadata["component"]] if isinstance(metadata.get("component"), dict) else []
    seen: set[str] = set()
    for where, c in [("metadata.component", c) for c in described] + [
        (f"components[{i}]", c) for i, c in enumerate(doc.get("components") or [])
    ]:
        ref = c.get("bom-ref")
        if ref is not None and ref in seen:
            raise InvalidSbom(f"{where}.bom-ref {ref!r} is not unique")
        if ref is not None:
            seen.add(ref)


__all__ = ["SPEC_VERSION", "InvalidSbom", "accept_uploaded_sbom", "firmware_sbom", "validate_sbom"]
