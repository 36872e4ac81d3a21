"""``fabguard fixture ...``: the test stations, registered on the server and enrolled from their line PC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import Instance, JsonOption, actor, command, console, print_json, state
from fabguard.cli.remote import Remote, through
from fabguard.domain import values
from fabguard.fixture.client import enroll
from fabguard.service.catalog import fixtures
from fabguard.service.core import server_tls

fixture_app = typer.Typer(help="Fixtures (test stations): register, enrol, list, revoke.", no_args_is_help=True)

FixtureId = Annotated[str, typer.Argument(help="The fixture's id, e.g. fx-line3-1")]


@command(fixture_app, "add")
def fixture_add(
    fixture_id: FixtureId, site: Annotated[str, typer.Option(help="The site the fixture stands in")]
) -> None:
    """Register a fixture; prints its one-time enrolment token."""

    def local(inst: Instance) -> tuple[dict[str, object], str, str]:
        f, token = fixtures.create_fixture(
            inst, fixture_id=values.FixtureId(fixture_id), site_id=values.SiteId.named(site), actor=actor(inst)
        )
        ca = inst.cas.cert_path("root")
        operator = server_tls.operator_files(inst.config)
        if operator is not None:  # the listener serves the operator's certificate: enrolment trusts their CA
            ca = operator.ca or operator.cert
        return {**fixtures.fixture_dict(f), "enrollment_token": token}, str(ca), inst.config.public_url

    def on_server(api: Remote) -> tuple[dict[str, object], str, str]:
        made = api.post("/api/v1/fixtures", {"id": fixture_id, "site_id": site})
        return made, str(state.ca or "root.pem"), api.url

    f, ca_file, server = through(local, on_server)
    ca = Path(ca_file)
    console.print(
        f"Fixture {f['id']} registered at {f['site_id']}. One-time enrolment token:\n[bold]{f['enrollment_token']}[/]"
    )
    console.print(
        "On the line PC, with the token in FABGUARD_ENROLLMENT_TOKEN (an argument would show in the process list): "
        f"fabguard fixture enroll --server {server} --ca {ca.name} --out DIR   (copy {ca} there)"
    )


@command(fixture_app, "token")
def fixture_token(fixture_id: FixtureId) -> None:
    """A fresh one-time enrolment token for a fixture (earlier unused ones lapse)."""
    token = through(
        lambda inst: fixtures.new_enrollment_token(inst, values.FixtureId.named(fixture_id), actor=actor(inst)),
        lambda api: str(api.post(f"/api/v1/fixtures/{fixture_id}/enrollment-token")["enrollment_token"]),
    )
    console.print(token)


@command(fixture_app, "list")
def fixture_list(as_json: JsonOption = False) -> None:
    """Every fixture with its site, state, enrolment and certificate."""
    rows: list[dict[str, object]] = through(
        lambda inst: [fixtures.fixture_dict(f) for f in fixtures.list_fixtures(inst)],
        lambda api: api.get("/api/v1/fixtures"),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("fixture", "site", "state", "enrolled", "cert serial", "revoked reason")
    for f in rows:
        table.add_row(
            str(f["id"]),
            str(f["site_id"]),
            str(f["state"]),
            str(f["enrolled_at"] or "-"),
            str(f["cert_serial"] or "-"),
            str(f["revoked_reason"] or ""),
        )
    console.print(table)


@command(fixture_app, "revoke")
def fixture_revoke(fixture_id: FixtureId, reason: Annotated[str, typer.Option(help="Why")]) -> None:
    """Revoke a fixture: every later call with its certificate is refused."""
    through(
        lambda inst: fixtures.revoke_fixture(
            inst, values.FixtureId.named(fixture_id), reason=reason, actor=actor(inst)
        ),
        lambda api: api.post(f"/api/v1/fixtures/{fixture_id}/revoke", {"reason": reason}),
    )
    console.print(f"Fixture {fixture_id} revoked")


@command(fixture_app, "enroll")
def fixture_enroll(
    server: Annotated[str, typer.Option(help="Server URL, e.g. https://fabguard.example:8443")],
    token: Annotated[
        str,
        typer.Option(
            help="The one-time enrolment token; better from FABGUARD_ENROLLMENT_TOKEN (an argument is visible to "
            "every user in the process list)",
            envvar="FABGUARD_ENROLLMENT_TOKEN",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Directory for the key, certificate and CA chain")],
    ca: Annotated[Path, typer.Option(help="The instance's root CA certificate (PEM), to trust the server")],
) -> None:
    """On a line PC: make the fixture key here, enrol, and leave fixture.key/.pem and ca.pem in OUT."""
    creds = enroll(server, token, out, ca_file=ca)
    console.print(f"Enrolled fixture {creds.fixture_id} at site {creds.site_id}; credentials in {out}")
    console.print(f"Try: curl --cert {creds.cert} --key {creds.key} --cacert {creds.ca} {server}/api/v1/fixture/whoami")
