"""``fabguard config ...``: the URLs an instance publishes, shown and changed after ``init``."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from fabguard.cli.common import JsonOption, command, console, print_json, state
from fabguard.service.core.config import InstanceConfig, load_config, set_published_urls

config_app = typer.Typer(
    help="The instance's published URLs: the HTTPS API (public-url), where certificates say CRLs and CA "
    "certificates are (pki-url, crl-url).",
    no_args_is_help=True,
)


class UrlSetting(enum.StrEnum):
    public_url = "public-url"
    pki_url = "pki-url"
    crl_url = "crl-url"


def _urls(config: InstanceConfig) -> dict[str, str]:
    return {
        "public_url": config.public_url,
        "pki_url": config.pki_url,
        "crl_base_url": config.crl_base_url,
        "ca_certificates_base_url": config.ca_issuers_base_url,
    }


@command(config_app, "show")
def config_show(as_json: JsonOption = False) -> None:  # JSON either way
    """The published URLs, as instance.json holds them, as JSON (``--json`` is accepted, like every show)."""
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
    those signed before keep naming the old one, so keep that address serving too."""
    config = set_published_urls(state.home, **{setting.name: url})
    print_json(_urls(config))
    console.print("Restart 'fabguard serve' for new certificates to name it.")
