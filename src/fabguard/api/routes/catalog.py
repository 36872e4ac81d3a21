"""The catalogue: products and CM sites (engineers keep it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from fabguard.api.deps import Engineer, Inst, Reader
from fabguard.api.responses.catalog import IdentityPools, NewAttestationRoot, Product, ProductAttestation, Site
from fabguard.api.schemas import (
    AttestationRootIn,
    IdentityPoolIn,
    ProductAttestationIn,
    ProductComplianceIn,
    ProductIn,
    SiteIn,
)
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import ProductId, SiteId
from fabguard.service.catalog import identity_pools, product_catalog
from fabguard.service.provisioning import attestation

router = APIRouter(tags=["admin"])


@router.post("/api/v1/products", status_code=201, response_model=Product)
def create_product(inst: Inst, body: ProductIn, p: Engineer) -> dict[str, Any]:
    prod = product_catalog.create_product(
        inst,
        product_id=ProductId(body.id),
        name=body.name,
        key_types=body.key_types,
        cert_lifetime_days=body.cert_lifetime_days,
        actor=p.actor,
    )
    return product_catalog.product_dict(prod)


@router.get("/api/v1/products", response_model=list[Product])
def list_products(inst: Inst, _: Reader) -> list[dict[str, Any]]:
    return [product_catalog.product_dict(x) for x in product_catalog.list_products(inst)]


@router.put("/api/v1/products/{product_id}/compliance", response_model=Product)
def set_product_compliance(inst: Inst, product_id: str, body: ProductComplianceIn, p: Engineer) -> dict[str, Any]:
    """Set the product's end of security support and its vulnerability contact (CRA evidence)."""
    prod = product_catalog.set_product_compliance(
        inst,
        ProductId(product_id),
        support_until=body.support_until,
        vulnerability_contact=body.vulnerability_contact,
        actor=p.actor,
    )
    return product_catalog.product_dict(prod)


@router.get("/api/v1/products/{product_id}/attestation", response_model=ProductAttestation)
def product_attestation(inst: Inst, product_id: str, _: Reader) -> dict[str, object]:
    """The product's key-attestation policy and the roots it trusts (README: Key attestation)."""
    return attestation.settings(inst, ProductId.named(product_id))


@router.put("/api/v1/products/{product_id}/attestation", response_model=ProductAttestation)
def set_product_attestation(inst: Inst, product_id: str, body: ProductAttestationIn, p: Engineer) -> dict[str, object]:
    """Set the policy: off (not read), optional (checked when presented) or required."""
    return attestation.set_policy(inst, ProductId.named(product_id), body.policy, actor=p.actor)


@router.post("/api/v1/products/{product_id}/attestation/roots", status_code=201, response_model=NewAttestationRoot)
def add_attestation_root(inst: Inst, product_id: str, body: AttestationRootIn, p: Engineer) -> dict[str, str]:
    """Trust a TPM maker's AK-issuing CA (kind tpm) or an SE vendor's CA (kind se) for this product."""
    return attestation.add_root(inst, ProductId.named(product_id), body.kind, body.certificate, actor=p.actor)


@router.delete("/api/v1/products/{product_id}/attestation/roots/{sha256}", status_code=204, response_class=Response)
def remove_attestation_root(inst: Inst, product_id: str, sha256: str, p: Engineer) -> None:
    """Stop trusting a root (by its certificate's SHA-256); issued certificates stay as they are."""
    attestation.remove_root(inst, ProductId.named(product_id), sha256, actor=p.actor)


@router.get("/api/v1/products/{product_id}/identities", response_model=IdentityPools)
def product_identities(inst: Inst, product_id: str, _: Reader) -> dict[str, object]:
    """The product's identity pools (serial format, MAC block, Matter settings) and how much each gave out."""
    return identity_pools.pools(inst, ProductId.named(product_id))


@router.put("/api/v1/products/{product_id}/identities", response_model=IdentityPools)
def set_product_identities(inst: Inst, product_id: str, body: IdentityPoolIn, p: Engineer) -> dict[str, object]:
    """Declare the product's identity pools (docs/identities.md); replaceable until one unit's identities are
    allocated (then `identity_pool_in_use`); a MAC block overlapping another product's is refused, and a
    Matter pool whose vendor or product ID is not the product's Matter PAIs' (`matter_ids_mismatch`)."""
    pool = pool_from_json(body.model_dump(mode="json"))
    return identity_pools.set_pools(inst, ProductId.named(product_id), pool, actor=p.actor)


@router.post("/api/v1/sites", status_code=201, response_model=Site)
def create_site(inst: Inst, body: SiteIn, p: Engineer) -> dict[str, Any]:
    site = product_catalog.create_site(inst, site_id=SiteId(body.id), name=body.name, actor=p.actor)
    return {"id": site.id, "name": site.name}


@router.get("/api/v1/sites", response_model=list[Site])
def list_sites(inst: Inst, _: Reader) -> list[dict[str, Any]]:
    return [{"id": x.id, "name": x.name} for x in product_catalog.list_sites(inst)]
