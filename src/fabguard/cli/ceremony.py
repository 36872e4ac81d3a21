"""``fabguard ceremony ...``: an offline root's key ceremonies (docs/ceremony.md).

Three commands run on the air-gapped ceremony machine and need no instance: ``new-root``, ``sign`` and
``crl`` (the root's key in a ceremony directory: an encrypted file, or an HSM through PKCS#11). The others
run on the server, on its instance (``--home``): ``add-issuer``, ``add-matter-pai``, ``add-licence-signer``
and ``request`` write a request bundle, ``import`` installs what a ceremony signed. Only bundles cross the air gap; none holds a private key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fabguard.cli.common import actor, command, console, opened
from fabguard.domain import values
from fabguard.domain.errors import InvalidRequest
from fabguard.pki import ceremony, ceremony_root
from fabguard.service.authority import ceremony as instance_side

ceremony_app = typer.Typer(
    help="An offline root's key ceremonies: 'new-root', 'sign' and 'crl' run on the air-gapped machine that "
    "holds the root key; 'add-issuer', 'add-licence-signer', 'request' and 'import' run on the server. Only bundles (CSRs, "
    "certificates, CRLs) cross the air gap. See docs/ceremony.md.",
    no_args_is_help=True,
)

RootDir = Annotated[
    Path, typer.Option("--root", help="The ceremony directory 'new-root' made (root certificate and state)")
]
Out = Annotated[Path, typer.Option("--out", help="A new directory to write the bundle into")]
CrlDays = Annotated[int, typer.Option("--crl-days", help="How long the root's CRL is valid (nextUpdate), in days")]


@command(ceremony_app, "new-root")
def new_root(
    directory: Annotated[Path, typer.Argument(help="A new ceremony directory (kept on the air-gapped machine)")],
    org: Annotated[str, typer.Option("--org", help="Organisation, exactly as the instance's 'init --org'")],
    common_name: Annotated[str | None, typer.Option("--common-name", help="Default: '<org> FabGuard Root CA'")] = None,
    key_backend: Annotated[
        str,
        typer.Option(
            "--key-backend", help="file (encrypted PKCS#8, passphrase from FABGUARD_KEY_PASSPHRASE) or pkcs11"
        ),
    ] = "file",
    pkcs11_module: Annotated[str | None, typer.Option("--pkcs11-module", help="PKCS#11 library of the HSM")] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="Token label (PIN from FABGUARD_PKCS11_PIN[_FILE])")
    ] = None,
    key_label: Annotated[
        str, typer.Option("--key-label", help="The root key's label in the token")
    ] = "fabguard-offline-root",
    years: Annotated[int, typer.Option("--years", help="The root certificate's lifetime")] = 25,
    matter_vid: Annotated[
        str | None,
        typer.Option("--matter-vid", help="Make the vendor's Matter PAA instead (its vendor ID, hex: e.g. FFF1)"),
    ] = None,
) -> None:
    """AIR-GAPPED: make the root key (in the HSM, or an encrypted file) and its self-signed certificate:
    FabGuard's root, or with --matter-vid the vendor's Matter PAA (a root of its own, its own directory)."""
    vid = _hex(matter_vid, "--matter-vid") if matter_vid is not None else None
    default_cn = f"{org} FabGuard Root CA" if vid is None else f"{org} Matter PAA {vid:04X}"
    cert = ceremony_root.create_root(
        directory,
        organization=org,
        matter_vid=vid,
        common_name=common_name or default_cn,
        now=datetime.now(UTC),
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        key_label=key_label,
        years=years,
    )
    console.print(f"Root made in {directory}: {cert.subject.rfc4514_string()}")
    console.print(f"SHA-256 fingerprint (record it in the ceremony log): {_fingerprint(cert)}")


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _signed(request_dir: Path, root_dir: Path, out: Path, crl_days: int, *, sign_csrs: bool) -> None:
    files = ceremony.read_directory(request_dir)
    request = ceremony.read_request(files)
    digest = ceremony.manifest_digest(files)
    console.print(f"Request {request_dir}: manifest SHA-256 {digest}, from instance {request.instance}")
    for r in request.requests if sign_csrs else ():
        console.print(f"  {r.name}: {r.profile}, O={r.organization}, CN={r.common_name}, key SHA-256 {r.fingerprint}")
    console.print(
        f"  root CRL: number >= {request.next_crl_number}, {len(request.revoked)} revoked certificate(s) (CAs, licence signers)"
    )
    with ceremony_root.opened_root(root_dir) as root:
        number = root.next_crl_number(request.next_crl_number)
        bundle = ceremony.sign_request(
            root.issuer,
            request,
            request_digest=digest,
            crl_number=number,
            now=datetime.now(UTC),
            crl_valid_for=timedelta(days=crl_days),
            sign_csrs=sign_csrs,
        )
        ceremony.write_directory(out, bundle.to_files())
        root.record_crl_number(number)
    console.print(
        f"Signed bundle written to {out}: {len(bundle.certificates)} certificate(s), root CRL number {number}"
    )


@command(ceremony_app, "sign")
def sign(
    request_dir: Annotated[Path, typer.Argument(help="The request bundle the instance wrote")],
    root: RootDir,
    out: Out,
    crl_days: CrlDays = 90,
) -> None:
    """AIR-GAPPED: sign the request's CSRs (their profiles, pathLen 0) and the root's CRL."""
    _signed(request_dir, root, out, crl_days, sign_csrs=True)


@command(ceremony_app, "crl")
def crl(
    request_dir: Annotated[Path, typer.Argument(help="A request bundle ('fabguard ceremony request' on the server)")],
    root: RootDir,
    out: Out,
    crl_days: CrlDays = 90,
) -> None:
    """AIR-GAPPED: sign only the root's CRL (listing the CAs the instance revoked), to renew it."""
    _signed(request_dir, root, out, crl_days, sign_csrs=False)


@command(ceremony_app, "add-issuer")
def add_issuer(
    name: Annotated[str, typer.Argument(help="A name for the new issuing CA")],
    out: Out,
    site: Annotated[str | None, typer.Option(help="Only orders at this site will use it")] = None,
    product: Annotated[str | None, typer.Option(help="Only orders of this product will use it")] = None,
) -> None:
    """SERVER: make a new issuing CA's key here (pending, it signs nothing) and write a request bundle
    with its CSR for the next ceremony; then 'fabguard ceremony import'."""
    with opened() as inst:
        files = instance_side.add_issuer(inst, values.CaName(name), site_id=site, product_id=product, actor=actor(inst))
    ceremony.write_directory(out, files)
    _told(out, files)


def _hex(value: str, option: str) -> int:
    try:
        return int(value, 16)
    except ValueError:
        raise InvalidRequest(f"{option} is hexadecimal, e.g. FFF1") from None


@command(ceremony_app, "add-matter-pai")
def add_matter_pai(
    name: Annotated[str, typer.Argument(help="A name for the new PAI")],
    out: Out,
    product: Annotated[str, typer.Option(help="The product whose units get Matter DACs")],
    vid: Annotated[str, typer.Option(help="Matter vendor ID, hex (e.g. FFF1): its PAA signs the PAI")],
    pid: Annotated[str | None, typer.Option(help="Matter product ID, hex (e.g. 8000)")] = None,
) -> None:
    """SERVER: make a Matter PAI's key here (pending) and write a request bundle for the ceremony of the
    vendor's PAA ('ceremony sign --root PAA-DIR'); then 'fabguard ceremony import'. Its VID (and PID) must
    be the product's Matter pool's."""
    pid_n = _hex(pid, "--pid") if pid is not None else None
    with opened() as inst:
        files = instance_side.add_matter_pai(
            inst, values.CaName(name), product_id=product, vid=_hex(vid, "--vid"), pid=pid_n, actor=actor(inst)
        )
    ceremony.write_directory(out, files)
    _told(out, files)


@command(ceremony_app, "add-licence-signer")
def add_licence_signer(
    product: Annotated[str, typer.Argument(help="The product whose feature licences it signs")],
    out: Out,
) -> None:
    """SERVER: make the product's next licence signer's key here (pending: it signs nothing) and write a
    request bundle with its CSR for the root's ceremony; once 'fabguard ceremony import' installs its
    certificate it signs the product's licences and the earlier signers retire."""
    with opened() as inst:
        files = instance_side.add_licence_signer(inst, values.ProductId.named(product), actor=actor(inst))
    ceremony.write_directory(out, files)
    _told(out, files)


@command(ceremony_app, "request")
def request(
    out: Out,
    root: Annotated[
        str, typer.Option("--for", help="Which offline root: 'root' (FabGuard's) or a Matter PAA, matter-paa-VID")
    ] = "root",
) -> None:
    """SERVER: write a request bundle: every CA waiting for that root's signature, and its CRL as this
    instance wants it (to renew the CRL, or after revoking a CA)."""
    with opened() as inst:
        files = instance_side.request_bundle(inst, root)
    ceremony.write_directory(out, files)
    _told(out, files)


def _told(out: Path, files: dict[str, bytes]) -> None:
    console.print(f"Request bundle written to {out}; manifest SHA-256 {ceremony.manifest_digest(files)}")
    console.print("Carry it to the ceremony; read the SHA-256 out there before signing.")


@command(ceremony_app, "import")
def import_(directory: Annotated[Path, typer.Argument(help="The signed bundle a ceremony wrote")]) -> None:
    """SERVER: check a signed bundle (each certificate for the key held here, its profile, chained to the
    root; the CRL the root's, newer, listing every revoked CA) and install it, or refuse it whole."""
    with opened() as inst:
        done = instance_side.import_bundle(inst, ceremony.read_directory(directory), actor=actor(inst))
    _imported(done)


def _imported(done: instance_side.Imported) -> None:
    console.print(
        f"Imported: root SHA-256 {done.root_fingerprint}; CA certificates: {', '.join(done.cas) or 'none'}; "
        f"root CRL number {done.crl_number}, next update {done.crl_next_update}"
    )
    for signer in done.licence_signers:
        product, generation = signer.split(" ")
        console.print(f"Licence signer {generation} of {product} signs from now on; earlier signers retired")
