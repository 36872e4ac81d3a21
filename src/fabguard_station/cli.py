"""``fabguard-station``: the command a test station's step runs (TestStand, LabVIEW, a shell, pytest, OpenHTF).

Every command takes ``--json`` (one JSON object on stdout: ``ok``, ``exit``, what was done, ``error``
with the server's code) and exits with a code a test executive branches on (``exit_codes.Exit``: 0 done,
2 usage, 3 refused, 4 server unavailable, 5 station error). Nothing prompts unless stdin is a terminal:
secrets (the enrolment token, a token's PIN) come from the environment or a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from fabguard_station import __version__, commands
from fabguard_station.client import FabGuardClientError
from fabguard_station.commands import Outcome, UsageError
from fabguard_station.exit_codes import MEANING, Exit
from fabguard_station.file_spool import FORMATS
from fabguard_station.token_keys import TokenError

DIR_ENV = "FABGUARD_STATION_DIR"
DEFAULT_DIR = "/etc/fabguard-station"

EPILOG = """exit codes: 0 done; 2 usage error (fix the call); 3 refused by the server (its code is printed, and
in --json); 4 server unavailable or transport error (retry later: an upload stays in the spool, and
'spool flush' or the next upload sends it); 5 station error (PKCS#11 token, spool disk); 1 a bug.
Secrets never go on the command line: FABGUARD_ENROLLMENT_TOKEN, FABGUARD_PKCS11_PIN (or --*-file).
Recipes for TestStand, LabVIEW, shell, pytest and OpenHTF: docs/station.md."""


def _common() -> argparse.ArgumentParser:
    """Options every command takes (also accepted before the command): defaults are the main parser's."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object on stdout")
    common.add_argument(
        "--dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"the station's credentials directory (from enroll; default ${DIR_ENV} or {DEFAULT_DIR})",
    )
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="seconds to wait for the server (default 30)"
    )
    return common


def _token_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--pkcs11-module", metavar="LIB", help=f"the PKCS#11 module of the token holding {what}")
    parser.add_argument("--token", metavar="LABEL", help="the token's label")
    parser.add_argument("--key-label", metavar="L", help="the key's label in the token (default: the serial)")
    parser.add_argument("--pin-file", type=Path, help="a file holding the token's user PIN (else $FABGUARD_PKCS11_PIN)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="fabguard-station",
        description="A FabGuard test station: enrol, upload test records in the line's own format, provision units.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fabguard-station {__version__}")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--dir", type=Path, default=None, help=f"credentials directory (${DIR_ENV}, {DEFAULT_DIR})")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help, description=help, epilog=EPILOG)

    p = command("enroll", "Make this station's key, enrol it with a one-time token, keep the credentials.")
    p.add_argument("--server", required=True, help="the server's URL, e.g. https://fabguard.example:8443")
    p.add_argument("--ca", type=Path, required=True, help="the instance's root CA certificate (PEM)")
    p.add_argument("--out", type=Path, help="where to keep the credentials (default: --dir)")
    p.add_argument(
        "--token-file", type=Path, help="a file holding the enrolment token (else $FABGUARD_ENROLLMENT_TOKEN)"
    )
    p.set_defaults(run=commands.enroll)

    p = command("whoami", "Ask the server which fixture and site these credentials are.")
    p.set_defaults(run=commands.whoami)

    p = command("upload", "Spool, then upload test-record files; the server parses them (one parser).")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="test-record files (one or more)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="their format (default: read off each file)")
    p.add_argument(
        "--tz", help="the station's IANA time zone for times written without one (TestStand), e.g. Europe/Berlin"
    )
    p.add_argument("--spool", type=Path, help="the spool directory (default: DIR/spool)")
    p.set_defaults(run=commands.upload)

    p = command("provision", "Ask for a unit's device certificate with its CSR, or with a key made in its token.")
    p.add_argument("--order", required=True, help="the order the unit is built on")
    p.add_argument("--serial", required=True, help="the unit's serial")
    p.add_argument("--csr", type=Path, help="the unit's CSR (PEM), made on the unit")
    _token_options(p, "the unit's key (its secure element): the key pair is made there and never leaves it")
    p.add_argument("--attestation", type=Path, help="the key's attestation (JSON), where the product asks for one")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where to write SERIAL.pem, SERIAL.chain.pem (and SERIAL.identity.json where the product has pools)",
    )
    p.set_defaults(run=commands.provision)

    p = command("allocate", "Allocate a unit's serial, MAC addresses and Matter codes before provisioning it.")
    p.add_argument("--order", required=True, help="the order the unit is built on")
    p.add_argument("--serial", help="the unit's serial, for a product without a serial format (else it is drawn)")
    p.add_argument("--out", type=Path, required=True, help="where to write SERIAL.identity.json")
    p.set_defaults(run=commands.allocate)

    p = command(
        "matter-partition",
        "Make a unit's ESP32 Matter factory data partition with esp-matter-mfg-tool, from its FabGuard identity and DAC.",
    )
    p.add_argument("--identity", type=Path, required=True, help="the unit's SERIAL.identity.json (allocate/provision)")
    p.add_argument("--certificate", type=Path, required=True, help="the unit's DAC (SERIAL.pem, from provision)")
    p.add_argument("--chain", type=Path, required=True, help="its chain (SERIAL.chain.pem: the PAI first)")
    p.add_argument("--key", type=Path, required=True, help="the DAC's private key (PEM), where the line made it")
    p.add_argument("--cd", type=Path, help="the certification declaration (DER), if the product has one")
    p.add_argument("--tool", help="esp-matter-mfg-tool (default: $FABGUARD_ESP_MATTER_MFG_TOOL, then the PATH)")
    p.add_argument("--target", default="esp32", help="the chip: esp32, esp32c3, esp32h2, ... (default esp32)")
    p.add_argument("--out", type=Path, required=True, help="where the tool writes the partition")
    p.set_defaults(run=commands.matter_partition)

    firmware = command("firmware", "Firmware for a unit.").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = firmware.add_parser("fetch", parents=[common], help="Fetch one unit's encrypted firmware package.")
    p.add_argument("--release", required=True, help="the release id")
    p.add_argument("--order", required=True, help="the order the unit was provisioned on")
    p.add_argument("--serial", required=True, help="the unit's serial")
    p.add_argument("--out", type=Path, required=True, help="where to write the package")
    p.set_defaults(run=commands.firmware_fetch)

    field = command("field", "Field checks, the device's side.").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = field.add_parser(
        "answer",
        parents=[common],
        help="Sign a field challenge with the unit's key: the body of POST /api/v1/field/verify.",
    )
    p.add_argument("--nonce", required=True, help="the challenge's nonce (64 hex digits)")
    p.add_argument("--chain", type=Path, required=True, help="the unit's certificate chain (PEM, device first)")
    p.add_argument("--key", type=Path, help="the unit's private key (PEM, unencrypted): a device model only")
    p.add_argument("--serial", help="the unit's serial (the default key label)")
    p.add_argument("--source", help="a label for where the check is made")
    _token_options(p, "the unit's key")
    p.set_defaults(run=commands.field_answer)

    spool = command("spool", "The upload spool.").add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help, run in (
        ("status", "What waits in the spool, and what the server rejected.", commands.spool_status),
        ("flush", "Send what waits in the spool, oldest first.", commands.spool_flush),
    ):
        p = spool.add_parser(name, parents=[common], help=help, description=help, epilog=EPILOG)
        p.add_argument("--spool", type=Path, help="the spool directory (default: DIR/spool)")
        p.set_defaults(run=run)
    return parser


def _emit(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        body = {"ok": outcome.exit == Exit.DONE, "exit": int(outcome.exit), "meaning": MEANING[outcome.exit]}
        body.update(outcome.body)
        print(json.dumps(body, indent=2, sort_keys=True))
        return
    for line in outcome.lines:
        print(line)
    if outcome.error is not None:
        print(f"{outcome.error[0]}: {outcome.error[1]}", file=sys.stderr if outcome.exit == Exit.USAGE else sys.stdout)


def _failed(exit: Exit, code: str, message: str) -> Outcome:
    return Outcome(exit, {"error": {"code": code, "message": message}}, [], (code, message))


def run(args: argparse.Namespace) -> Outcome:
    """Run the parsed command; every failure that is not a bug becomes its exit code."""
    args.dir = args.dir or Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)
    try:
        outcome: Outcome = args.run(args)
    except UsageError as exc:
        return _failed(Exit.USAGE, "usage", str(exc))
    except TokenError as exc:
        return _failed(Exit.STATION, exc.code, exc.message)
    except FabGuardClientError as exc:
        busy = exc.status >= 500 or exc.status in (408, 429) or exc.code == "idempotency_key_in_progress"
        return _failed(Exit.UNAVAILABLE if busy else Exit.REFUSED, exc.code, exc.message)
    except httpx.HTTPError as exc:
        return _failed(Exit.UNAVAILABLE, "server_unavailable", f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return _failed(Exit.STATION, "station_io", f"{type(exc).__name__}: {exc}")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outcome = run(args)
    _emit(outcome, bool(args.json))
    return int(outcome.exit)


if __name__ == "__main__":
    sys.exit(main())
