"""``fabguard agent ...``: an offline site agent, a FabGuard instance of its own run from a quota lease.

``--home`` names the agent's directory (not the central server's).
"""

from __future__ import annotations

import os
import ssl
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from fabguard.cli import instance
from fabguard.cli.common import (
    EXIT_REFUSED,
    TOKEN_ENV,
    JsonOption,
    command,
    console,
    fail,
    opened,
    print_json,
    state,
)
from fabguard.domain.errors import InvalidRequest
from fabguard.service.agent import site_agent
from fabguard.service.catalog import orders

agent_app = typer.Typer(
    help=(
        "An offline site agent: provisions within a quota lease while the link to the central server is down. "
        "Steps: 'agent prepare' (keys and a lease request), 'lease issue' on the central server (a second "
        "person approves), 'lease bundle', "
        "'agent init --lease', 'agent serve'; to give unused units back: 'agent finish', 'agent sync', and "
        "'lease close' on the central server."
    ),
    no_args_is_help=True,
)


@command(agent_app, "prepare")
def agent_prepare(
    site: Annotated[str, typer.Option("--site", help="The site (contract manufacturer) the agent runs at")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the lease request for the central server")],
    hostname: Annotated[
        list[str] | None, typer.Option("--hostname", help="The agent's name for its TLS certificate (repeatable)")
    ] = None,
    key_backend: Annotated[
        str, typer.Option("--key-backend", help="Where the agent's issuing key lives: file or pkcs11")
    ] = "file",
    pkcs11_module: Annotated[str | None, typer.Option("--pkcs11-module", help="PKCS#11 library")] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="Token label (PIN from FABGUARD_PKCS11_PIN[_FILE])")
    ] = None,
) -> None:
    """Make the agent's keys (issuing key, TLS key, ledger key) and its lease request: public parts only."""
    text = site_agent.prepare_agent(
        state.home,
        site_id=site,
        hostnames=tuple(hostname) if hostname else ("127.0.0.1",),
        key_backend=key_backend,
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
    )
    out.write_text(text)
    console.print(
        f"[green]Agent keys made[/] in {state.home}; send {out} to the central server ('fabguard lease issue')"
    )


@command(agent_app, "init")
def agent_init(
    lease: Annotated[Path, typer.Option("--lease", help="The signed lease bundle ('fabguard lease bundle --out')")],
) -> None:
    """Check the lease against this agent's keys and make the agent's instance: the order, the site's fixtures."""
    terms = site_agent.init_agent(state.home, lease.read_text())
    console.print(
        f"[green]Agent ready[/]: lease {terms.lease_id}, {terms.units} units of order {terms.order_id} "
        f"at {terms.site_id} until {terms.not_after.isoformat()}"
    )


@command(agent_app, "status")
def agent_status(as_json: JsonOption = False) -> None:  # JSON either way
    """The lease this agent runs under and how much of it is used, as JSON (``--json`` is accepted)."""
    terms = site_agent.agent_lease(state.home)
    with opened() as inst:
        order = orders.get_order(inst, terms.order_id)
    print_json(
        {
            "lease_id": terms.lease_id,
            "order_id": terms.order_id,
            "site_id": terms.site_id,
            "units": terms.units,
            "used": order.used,
            "not_after": terms.not_after.isoformat(),
        }
    )


@command(agent_app, "sync")
def agent_sync(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the sync package here (carry it to the server)")
    ] = None,
    central: Annotated[
        str | None,
        typer.Option("--central", help="Or send it to the central server at this URL (admin token in FABGUARD_TOKEN)"),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="The CA that certifies the central server's HTTPS certificate, when it serves the operator's own "
            "(default: FabGuard's root, as the lease brought it)",
        ),
    ] = None,
) -> None:
    """Send the agent's log, signed checkpoint and unit certificates to the central server (or to a file)."""
    if (out is None) == (central is None):
        raise InvalidRequest("give one of --out FILE or --central URL")
    with opened() as inst:
        package = site_agent.sync_package(inst, state.home)
    if out is not None:
        out.write_text(package.to_json())
        console.print(f"[green]Sync package[/] of {len(package.entries)} entries written to {out}")
        return
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise InvalidRequest(f"--central needs an admin token in {TOKEN_ENV}", code="token_required")
    verify = ssl.create_default_context(cafile=str(ca or state.home / "ca" / "root.pem"))
    with httpx.Client(base_url=str(central), verify=verify, timeout=60) as client:
        answer = client.post(
            f"/api/v1/leases/{package.lease_id}/sync",
            content=package.to_json(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
    if answer.status_code != 200:
        error = (
            answer.json().get("error", {})
            if answer.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        code = str(error.get("code", answer.status_code))
        fail(f"the server refused: {error.get('message', answer.text[:200])} [{code}]", EXIT_REFUSED, error=code)
    print_json(answer.json())


@command(agent_app, "finish")
def agent_finish(as_json: JsonOption = False) -> None:
    """End the lease here before its time: the agent provisions no more, and its next sync is its final log.

    The agent's order is closed (its quota cut to the units made) and an agent.lease_finished entry goes into
    its log. Then 'fabguard agent sync' and, on the central server, 'fabguard lease close LEASE' return the
    units not made to the order. Running it again changes nothing.
    """
    with opened() as inst:
        done = site_agent.finish_agent(inst, state.home)
    if as_json:
        print_json(done)
        return
    console.print(
        f"[green]Lease {done['lease_id']} finished[/] at the site: {done['made']} of {done['units']} units made. "
        "Next: 'fabguard agent sync', then 'fabguard lease close' on the central server"
    )


@wraps(instance.serve)
def _agent_serve(**options: Any) -> None:
    site_agent.agent_lease(state.home)  # refuse a home that is not an agent's
    instance.serve(**options)


_agent_serve.__doc__ = (
    "Serve the fixture API from the agent, with the options of 'fabguard serve'. Provisioning stops at the "
    "lease's units (quota_exhausted) and at its end (order_expired)."
)
command(agent_app, "serve")(_agent_serve)
