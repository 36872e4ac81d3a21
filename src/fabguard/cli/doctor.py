"""``fabguard doctor``: check an instance (file permissions, key protection, the database, the clock, the
published URLs, certificate expiry) and say what to fix. A top-level command, registered by ``cli.main``."""

from __future__ import annotations

import os
import ssl
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from fabguard.cli.common import Instance, console, print_json, state
from fabguard.domain.errors import FabGuardError
from fabguard.service.core import server_tls
from fabguard.service.operations import doctor as checks

# What doctor exits with: scripts and CI run it as a gate.
HEALTHY, FAILED = 0, 1
_MARK = {"ok": "[green]ok[/]     ", "warning": "[yellow]warning[/]", "failed": "[bold red]FAILED[/] "}
PROBE_SECONDS = 3.0


def _probe(root_pem: str, operator_pems: list[str]) -> checks.Probe:
    """GET a URL as a client would (HTTPS verified against the instance's root CA, and the operator's CA if the
    listener serves the operator's certificate): None if it answers 200."""
    verify = ssl.create_default_context(cafile=root_pem)
    if operator_pems:
        verify.load_verify_locations(cadata="".join(operator_pems))

    def probe(url: str) -> str | None:
        try:
            answer = httpx.get(url, verify=verify, timeout=PROBE_SECONDS)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {str(exc)[:120]}"
        return None if answer.status_code == 200 else f"HTTP {answer.status_code}"

    return probe


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Do not try to reach the published URLs")] = False,
) -> None:
    """Check this instance as an operator would and say what to fix: file permissions, key protection
    (run it with the service's passphrase file to check that the keys open), the database and its
    schema, the clock, the published URLs (unreachable ones are only a warning), certificate expiry, and
    the operator's HTTPS certificate if 'fabguard config tls' names one (readable, matching its key, in
    date, naming the public URL's host).
    Exits 1 if a check failed, 0 otherwise (warnings included)."""
    inst = Instance.open(state.home, check_schema=False)  # a database behind the code is a finding here
    try:
        probe = None if offline else _probe(str(inst.cas.cert_path("root")), _operator_trust(inst))
        findings = checks.examine(inst, os.environ, probe)
    finally:
        inst.close()
    failed = [f for f in findings if f.status == "failed"]
    if as_json:
        print_json({"healthy": not failed, "findings": [f.to_dict() for f in findings]})
    else:
        for f in findings:
            console.print(f"{_MARK[f.status]} {f.check:<12} {escape(f.message)}")
            if f.fix and f.status != "ok":
                console.print(f"{'':20} fix: {escape(f.fix)}")
        warned = sum(f.status == "warning" for f in findings)
        console.print(f"{len(failed)} failed, {warned} warning(s), {len(findings) - len(failed) - warned} ok")
    if failed:
        raise typer.Exit(FAILED)


def _operator_trust(inst: Instance) -> list[str]:
    """The operator's CA certificates for the HTTPS listener, if any can be read (the "tls" findings say if not)."""
    files = server_tls.operator_files(inst.config)
    try:
        return server_tls.client_trust_pems(files) if files is not None else []
    except FabGuardError:
        return []
