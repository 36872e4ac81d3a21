"""``fabguard demo``: the server and a simulated production line that tries every trick in the book.

A top-level command: ``cli.main`` registers it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fabguard.cli.common import CONFIG_NAME, Instance, console, init_instance, state
from fabguard.domain.errors import SchemaMismatch
from fabguard.domain.filenames import path_inside, safe_file_name
from fabguard.domain.values import FixtureId, OrderId, ProductId, Role, SiteId
from fabguard.fixture.client import Credentials, enroll
from fabguard.fixture.simulator import LineConfig, LineReport, ProductionLine
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV
from fabguard.runtime import tune_gc
from fabguard.service.access import tokens
from fabguard.service.analytics import dashboard_queries
from fabguard.service.catalog import fixtures, orders, product_catalog

DEMO_PASSPHRASE_FILE = "demo-passphrase"
DEMO_KEYS = "demo-device-keys"
DEMO_KEY_MARK = b"DEMO ONLY: a simulated device's private key, written by 'fabguard demo --out'.\n"
DEMO_KEYS_README = """DEMO ONLY. These are the private keys of the demo's simulated devices, unencrypted, one per
certificate in ../certs (same name), so that the README's field check can be followed from the demo:

    openssl dgst -sha256 -sign demo-device-keys/SERIAL.key.pem -out sig.der msg.bin

A real device's key is made on its secure element and never leaves it: FabGuard never sees, stores or
writes one. Do not use these keys for anything but the demo.
"""
PRODUCT, SITE, OTHER_SITE = "demo-sensor", "cm-shenzhen", "cm-penang"
# Boards a fixture tests together (a 2 x 5 panel on one bed of nails), their records in one upload: one
# request and one transaction per record took about 40% of the time the server spent writing.
PANEL = 10


def _ensure_passphrase(home: Path) -> None:
    """The demo makes its own passphrase file when none is configured: fine for a demo, not for production."""
    if os.environ.get(PASSPHRASE_ENV) or os.environ.get(PASSPHRASE_FILE_ENV):
        return
    path = home / DEMO_PASSPHRASE_FILE
    if not path.exists():
        if (home / CONFIG_NAME).exists():
            raise typer.BadParameter(f"{home} holds an instance; set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV} for it")
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
        console.print(f"[yellow]demo:[/] no {PASSPHRASE_ENV} set; generated {path} for this demo instance only")
    os.environ[PASSPHRASE_FILE_ENV] = str(path)


def _setup(inst: Instance, quota: int, n_fixtures: int, run: str) -> tuple[str, list[tuple[str, str]], tuple[str, str]]:
    existing_products = {p.id for p in product_catalog.list_products(inst)}
    if PRODUCT not in existing_products:
        product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Demo Sensor", actor="demo")
    existing_sites = {s.id for s in product_catalog.list_sites(inst)}
    for site, name in ((SITE, "CM Shenzhen line 3"), (OTHER_SITE, "CM Penang")):
        if site not in existing_sites:
            product_catalog.create_site(inst, site_id=SiteId(site), name=name, actor="demo")
    order = orders.create_order(
        inst,
        order_id=OrderId(f"demo-{run}"),
        product_id=ProductId(PRODUCT),
        site_id=SiteId(SITE),
        quota=quota,
        actor="demo",
    )
    line = [
        fixtures.create_fixture(inst, fixture_id=FixtureId(f"fx-{run}-{i}"), site_id=SiteId(SITE), actor="demo")
        for i in range(n_fixtures)
    ]
    stray = fixtures.create_fixture(
        inst, fixture_id=FixtureId(f"fx-{run}-stray"), site_id=SiteId(OTHER_SITE), actor="demo"
    )
    return order.id, [(f.id, t) for f, t in line], (stray[0].id, stray[1])


def demo(
    units: Annotated[
        int, typer.Option(help="Genuine boards the line builds (more than the quota = overproduction)")
    ] = 560,
    quota: Annotated[int, typer.Option(help="The order's quota")] = 500,
    fixtures_n: Annotated[int, typer.Option("--fixtures", help="Fixtures working in parallel")] = 8,
    fail_rate: Annotated[float, typer.Option(help="Share of test runs that fail")] = 0.04,
    retest_rate: Annotated[float, typer.Option(help="Share of failed boards repaired and retested")] = 0.8,
    clones: Annotated[int, typer.Option(help="Cloned boards (a provisioned key on a new serial)")] = 4,
    skip_tests: Annotated[int, typer.Option(help="Boards sent for a certificate without a test")] = 4,
    wrong_site: Annotated[int, typer.Option(help="Attempts from a fixture at another site")] = 3,
    duplicates: Annotated[int, typer.Option(help="Boards reusing a provisioned serial with a key of their own")] = 0,
    copied_records: Annotated[int, typer.Option(help="Boards whose test record is copied from another board")] = 0,
    revoked: Annotated[int, typer.Option(help="Attempts from a revoked fixture")] = 0,
    burst: Annotated[int, typer.Option(help="Extra boards provisioned back to back after the line")] = 0,
    drift_after: Annotated[
        int | None, typer.Option(help="Boards numbered above this measure vcc_3v3 3 sigma high (drift)")
    ] = None,
    batch: Annotated[int, typer.Option(help="Units per provisioning request (1 = one at a time)")] = 1,
    port: Annotated[int, typer.Option(help="HTTPS port (0 = any free port)")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Leave CA certs, device certs, summary.json and (demo only) the devices' keys here"),
    ] = None,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="Keep the server up after the run")] = False,
    seed: Annotated[int, typer.Option(help="Random seed for the simulated line")] = 1,
) -> None:
    """Start the server and drive a simulated production line against it over HTTPS, then summarise (the
    instance an earlier demo made is upgraded to this FabGuard's schema first; any other is not touched)."""
    # Lazy: the web stack (FastAPI, uvicorn) takes about half a second to import, which no other command needs.
    from fabguard.api.server import ServerThread

    tune_gc()
    inst = _open_demo_instance(state.home)
    work = Path(tempfile.mkdtemp(prefix="fabguard-demo-"))
    run = time.strftime("%Y%m%d-%H%M%S")
    try:
        order_id, line_tokens, stray_line = _setup(inst, quota, fixtures_n, run)
        _, admin_token = tokens.create_token(inst, name=f"demo-{run}", role=Role.ADMIN, actor="demo")
        with ServerThread(inst, port=port) as server:
            console.print(
                f"Server up at [bold]{server.url}[/] - order [bold]{order_id}[/], quota {quota}, "
                f"{fixtures_n} fixtures at {SITE}"
            )
            root = inst.cas.cert_path("root")
            creds, stray, untrusted = _enroll_line(inst, server.url, root, work, run, line_tokens, stray_line, revoked)
            total = units + clones + skip_tests + wrong_site + duplicates + copied_records + revoked + burst
            config = LineConfig(
                order_id=order_id,
                units=units,
                fail_rate=fail_rate,
                retest_rate=retest_rate,
                clones=clones,
                skip_tests=skip_tests,
                wrong_site_attempts=wrong_site,
                duplicate_serials=duplicates,
                copied_records=copied_records,
                untrusted_attempts=revoked,
                burst=burst,
                drift_after=drift_after,
                batch_size=batch,
                seed=seed,
                panel=PANEL,
                serial_prefix=f"D{run[-6:]}-",
            )
            report, elapsed = _run_line(creds, config, stray, untrusted, total)
            view = orders.get_order(inst, order_id)
            summary = {"order_id": order_id, **report.to_dict(quota)}
            _print_summary(summary, view, elapsed, inst)
            if out is not None:
                _write_out(out, inst, report, summary)
                console.print(
                    f"Wrote CA certificates, {len(report.certificates)} device certificates and summary.json to "
                    f"{out}, and the simulated devices' keys to {out / DEMO_KEYS} [yellow](demo only)[/]"
                )
            if keep_serving:
                _serve_until_interrupted(server.url, root, admin_token, order_id)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        inst.close()


def _open_demo_instance(home: Path) -> Instance:
    """The instance at ``home``, created for the demo when there is none. An instance an earlier demo made
    (its own passphrase file beside it) is brought up to the code's schema, as a newer FabGuard's demo
    needs; any other instance behind the code is refused (``database_behind_code``), as every command does."""
    _ensure_passphrase(home)
    if not (home / CONFIG_NAME).exists():
        init_instance(home, organization="FabGuard Demo Devices")
        console.print(f"Created a demo instance in {home}")
    try:
        return Instance.open(home)
    except SchemaMismatch as behind:
        if behind.code != "database_behind_code" or not (home / DEMO_PASSPHRASE_FILE).exists():
            raise
        why = behind.message.split(":")[0]  # "the database is at revision R and this FabGuard needs revision C"
    inst = Instance.open(home, migrate=True)
    console.print(f"[yellow]demo:[/] upgraded the demo instance in {home} ({why})")
    return inst


def _enroll_line(
    inst: Instance,
    url: str,
    root: Path,
    work: Path,
    run: str,
    line_tokens: list[tuple[str, str]],
    stray_line: tuple[str, str],
    revoked: int,
) -> tuple[list[Credentials], Credentials, Credentials | None]:
    """Enrol the line's fixtures and the other site's one; with ``revoked``, one more fixture, revoked once
    enrolled, whose credentials the line then tries."""
    creds = [enroll(url, t, work / fid, ca_file=root) for fid, t in line_tokens]
    stray_id, stray_token = stray_line
    stray = enroll(url, stray_token, work / stray_id, ca_file=root)
    untrusted = None
    if revoked:
        rogue_id = f"fx-{run}-revoked"
        _, rogue_token = fixtures.create_fixture(
            inst, fixture_id=FixtureId(rogue_id), site_id=SiteId(SITE), actor="demo"
        )
        untrusted = enroll(url, rogue_token, work / rogue_id, ca_file=root)
        fixtures.revoke_fixture(inst, FixtureId(rogue_id), reason="reported stolen (demo)", actor="demo")
    return creds, stray, untrusted


def _run_line(
    creds: list[Credentials],
    config: LineConfig,
    stray: Credentials,
    untrusted: Credentials | None,
    total: int,
) -> tuple[LineReport, float]:
    """Run the simulated line under a progress bar; its report and how long it took."""
    lock = threading.Lock()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("issued {task.fields[issued]}  refused {task.fields[refused]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("building", total=total, issued=0, refused=0)
        counts = {"issued": 0, "refused": 0}

        def on_attempt(kind: str, code: str | None) -> None:
            with lock:
                counts["refused" if code else "issued"] += 1
                progress.update(task, advance=1, issued=counts["issued"], refused=counts["refused"])

        started = time.monotonic()
        with ProductionLine(creds, config, wrong_site=stray, untrusted=untrusted, on_attempt=on_attempt) as line:
            report = line.run()
        elapsed = time.monotonic() - started
        progress.update(task, completed=total)
    return report, elapsed


def _serve_until_interrupted(url: str, root: Path, admin_token: str, order_id: str) -> None:
    console.print(
        f"Serving at {url} until Ctrl-C. Admin token: [bold]{admin_token}[/]\n"
        f"  Live dashboard: {url}/ (sign in with the token; the browser must trust {root})\n"
        f"  curl --cacert {root} -H 'Authorization: Bearer {admin_token}' "
        f"{url}/api/v1/orders/{order_id}"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")


def _print_summary(summary: dict[str, object], view: orders.OrderView, elapsed: float, inst: Instance) -> None:
    table = Table(title="Production run", show_header=False)
    table.add_row("ordered (quota)", str(summary["ordered"]))
    table.add_row("provisioning attempts", str(summary["attempted"]))
    table.add_row("provisioned", f"[green]{summary['provisioned']}[/]")
    refused = summary["refused"]
    assert isinstance(refused, dict)
    for code, n in refused.items():
        table.add_row(f"refused: {code}", f"[red]{n}[/]")
    tests = summary["tests"]
    assert isinstance(tests, dict)
    table.add_row("test records uploaded", str(tests["uploaded"]))
    table.add_row("tests failed / retests / scrapped", f"{tests['failed']} / {tests['retests']} / {tests['scrapped']}")
    table.add_row("order used / remaining", f"{view.used} / {view.remaining}")
    table.add_row("events recorded", str(dashboard_queries.current_sequence(inst)))
    table.add_row("elapsed", f"{elapsed:.1f} s ({int(summary['attempted']) / max(elapsed, 1e-9):.0f} attempts/s)")  # type: ignore[call-overload]
    console.print(table)
    defences = {
        "quota_exhausted": "overproduction stopped at the quota",
        "key_reused": "cloned keys caught",
        "serial_has_other_key": "duplicated serials caught",
        "fixture_revoked": "revoked fixture refused",
        "test_missing": "untested boards refused",
        "wrong_site": "fixture from another site refused",
        "test_failed": "failed boards refused",
    }
    for code, text in defences.items():
        if refused.get(code):
            console.print(f"  [green]\u2713[/] {text} ({refused[code]})")


def _write_out(out: Path, inst: Instance, report: LineReport, summary: dict[str, object]) -> None:
    """The CA certificates, each device's certificate and (demo only) key, named after its serial made a safe
    file name, and the summary: every file inside ``out``."""
    for folder in ("ca", "certs", DEMO_KEYS):
        path_inside(out, folder).mkdir(parents=True, exist_ok=True)
    for name in ("root", "issuing", "station"):
        shutil.copyfile(inst.cas.cert_path(name), path_inside(out, f"ca/{name}.pem"))
    for serial, pem in report.certificates.items():
        path_inside(out, f"certs/{safe_file_name(serial)}.pem").write_text(pem)
    for serial, key in report.device_keys.items():
        key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        _write_private(path_inside(out, f"{DEMO_KEYS}/{safe_file_name(serial)}.key.pem"), DEMO_KEY_MARK + key_pem)
    path_inside(out, f"{DEMO_KEYS}/README.txt").write_text(DEMO_KEYS_README)
    path_inside(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _write_private(path: Path, data: bytes) -> None:
    """A file only its owner reads, never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)
