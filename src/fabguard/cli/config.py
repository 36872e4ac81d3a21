"""``fabguard config ...``: the URLs an instance publishes, shown and changed after ``init``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from fabguard.cli.common import JsonOption, actor, command, console, opened, print_json, state
from fabguard.domain.errors import InvalidRequest
from fabguard.pki.server_tls import ServerCredentials
from fabguard.service.core import config_changes, server_tls
from fabguard.service.core.config import InstanceConfig, load_config, set_published_urls

config_app = typer.Typer(
    help="The instance's published URLs: the HTTPS API (public-url), where certificates say CRLs and CA "
    "certificates are (pki-url, crl-url); the HTTPS listener's own certificate (tls).",
    no_args_is_help=True,
)


class UrlSetting(enum.StrEnum):
    public_url = "public-url"
    pki_url = "pki-url"
    crl_url = "crl-url"


def _urls(config: InstanceConfig) -> dict[str, str | None]:
    return {
        "public_url": config.public_url,
        "pki_url": config.pki_url,
        "crl_base_url": config.crl_base_url,
        "ca_certificates_base_url": config.ca_issuers_base_url,
        "tls_cert": config.tls_cert,
        "tls_key": config.tls_key,
        "tls_key_passphrase_file": config.tls_key_passphrase_file,
        "tls_ca": config.tls_ca,
        "tls_pkcs11_key": config.tls_pkcs11_key,
        "tls_pkcs11_module": config.tls_pkcs11_module,
    }


@command(config_app, "show")
def config_show(as_json: JsonOption = False) -> None:  # JSON either way
    """The published URLs and the HTTPS listener's certificate files, as instance.json holds them (tls_cert
    null: the certificate init made under the station CA), as JSON (``--json`` is accepted, like every show)."""
    print_json(_urls(load_config(state.home)))


@command(config_app, "set")
def config_set(
    setting: Annotated[
        UrlSetting,
        typer.Argument(
            help="public-url: the HTTPS API's URL as clients reach it; pki-url: the plain-HTTP base of "
            "<URL>/crl/CA.crl and <URL>/ca/CA.crt (CRLs move with it); crl-url: the CRLs' base alone"
        ),
    ],
    url: Annotated[str, typer.Argument(help="e.g. https://fab.example:8443 or http://fab.example:8080")],
) -> None:
    """Change a published URL. Certificates signed from then on name it (restart 'fabguard serve');
    those signed before keep naming the old one, so keep that address serving too. The change is recorded in
    the ledger (config.urls_changed: who, each URL from and to)."""
    with opened() as inst:
        config = config_changes.change_config(
            inst, state.home, "config.urls_changed", config_changes.URL_FIELDS,
            lambda: set_published_urls(state.home, **{setting.name: url}), actor=actor(inst),
        )  # fmt: skip
    print_json(_urls(config))
    console.print("Restart 'fabguard serve' for new certificates to name it.")


@command(config_app, "tls")
def config_tls(
    cert: Annotated[
        Path | None, typer.Option("--cert", help="PEM file: the server's certificate first, then its CA chain")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="PEM file: the certificate's private key")] = None,
    key_passphrase_file: Annotated[
        Path | None, typer.Option("--key-passphrase-file", help="File holding the key's passphrase, if encrypted")
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="PEM file: the CA certificate(s) clients should trust for it, handed to fixtures at enrolment "
            "(default: the self-signed certificates at the end of --cert)",
        ),
    ] = None,
    pkcs11_key: Annotated[
        str | None,
        typer.Option(
            "--pkcs11-key",
            help="The key in an HSM instead of --key: a PKCS#11 URI, e.g. 'pkcs11:token=tls;object=server' "
            "(PIN from FABGUARD_PKCS11_PIN[_FILE]; needs libengine-pkcs11-openssl)",
        ),
    ] = None,
    pkcs11_module: Annotated[
        str | None,
        typer.Option("--pkcs11-module", help="The PKCS#11 library for --pkcs11-key (default: the instance's)"),
    ] = None,
    station: Annotated[
        bool, typer.Option("--station", help="Go back to the certificate init made under FabGuard's station CA")
    ] = False,
) -> None:
    """The HTTPS listener's own certificate: the operator's (--cert, --key), or FabGuard's (--station).

    The files are checked (readable, the key opening and matching the certificate, the chain in order) and
    named in instance.json, never copied: replace them in place or name others, then send the running
    server SIGHUP (kill -HUP PID; systemctl reload fabguard). New connections get the new certificate.
    Fixtures' client certificates are still verified against FabGuard's own CAs. The change is recorded in the
    ledger (config.tls_changed: who, each file name from and to)."""
    files = None
    if station:
        if cert or key or key_passphrase_file or ca or pkcs11_key:
            raise InvalidRequest("--station goes alone: it drops the operator's certificate files")
    elif cert is None:
        raise InvalidRequest("give --cert and --key (or --pkcs11-key): the operator's certificate; or --station")
    else:
        module = pkcs11_module or (load_config(state.home).pkcs11_module if pkcs11_key else None)
        files = server_tls.OperatorFiles.named(
            cert, key, key_passphrase_file, ca, pkcs11_key=pkcs11_key, pkcs11_module=module
        )
        if files.pkcs11_key is not None:
            # Lazy: the web stack's TLS loader (ctypes, OpenSSL's engine) is needed only to check an HSM key.
            from fabguard.api.server_tls import check_operator

            check_operator(files)
    config, credentials = _set_tls(files)
    print_json(_urls(config))
    if credentials is not None:
        console.print(f"The HTTPS listener will serve {credentials.describe()}.")
    console.print("Send the running server SIGHUP (kill -HUP PID) for new connections to get it.")


def _set_tls(
    files: server_tls.OperatorFiles | None,
) -> tuple[InstanceConfig, ServerCredentials | None]:
    """Name ``files`` (or the station's certificate) in instance.json, recorded in the ledger: the
    configuration saved and the credentials the listener will serve."""
    with opened() as inst:
        return config_changes.change_config(
            inst, state.home, "config.tls_changed", config_changes.TLS_FIELDS,
            lambda: server_tls.set_operator_tls(state.home, files), actor=actor(inst),
        )  # fmt: skip
