"""What every subcommand shares: the instance it works on, who is acting, how its output and errors are shown.

Every subcommand is registered with :func:`command`, so whatever it raises of ours (a ``FabGuardError``, any
error of the fixture SDK such as a server's refusal, an unreadable file) reaches the operator as one line ending in
its machine-readable code, never as a traceback (and, with ``--json``, as ``{"error": {"code", "message"}}`` on
stdout too). Exit codes (docs/cli.md has the table): 0 done; 1 a verification or check failed (``audit verify``,
``licence verify``, ``doctor``, ``db check`` ...); 2 a usage error (an option or argument the command does not
take, a file it cannot read, a command that needs the instance directory run with ``--server``:
``needs_instance``); 3 refused (bad input, not found, not allowed, a state that does not allow it: the code in
brackets says which, the same code the API answers); 4 the database, the key store or the server is unavailable
(trying again later may work). It works on the instance through :func:`opened` (or on a server through
``cli.remote``). The CLI's only imports of ``fabguard.service.core.instance`` are here, so the other modules take
``Instance`` and its helpers from this one.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from fabguard.domain.errors import FabGuardError, InvalidRequest, Unavailable
from fabguard.domain.values import Role
from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.errors import FixtureError
from fabguard.service.access import tokens
from fabguard.service.approvals import requests
from fabguard.service.core.config import CONFIG_NAME, HOME_ENV, default_home
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance

__all__ = [
    "CONFIG_NAME",
    "EXIT_FAILED",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "HOME_ENV",
    "PIPE_WIDTH",
    "REASON_HELP",
    "TOKEN_ENV",
    "Instance",
    "JsonOption",
    "ScriptableConsole",
    "actor",
    "approver",
    "command",
    "console",
    "err_console",
    "fail",
    "friendly",
    "init_instance",
    "needs_instance",
    "opened",
    "parse_time",
    "principal",
    "print_json",
    "requester",
    "state",
]

PIPE_WIDTH = 100_000
"""The width the CLI writes at when stdout is not a terminal: wide enough that no line is ever wrapped or cut."""


class ScriptableConsole(Console):
    """Rich's console, made for scripts as much as for people.

    When stdout is not a terminal (a pipe, a file) there is no screen to fit: every line is as long as its
    content, so a table row stays on one line with every value whole (``fabguard order list | grep po-1042``
    finds it; ``--json`` gives the same data for a program). On a terminal a table too wide for the screen wraps
    its cells, folding a long id across lines; no value is ever cut to "…".
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def print(self, *objects: Any, **kwargs: Any) -> None:
        for obj in objects:
            if isinstance(obj, Table):
                for column in obj.columns:
                    column.overflow = "fold"
        super().print(*objects, **kwargs)


console = ScriptableConsole()
err_console = Console(stderr=True, soft_wrap=True)

TOKEN_ENV = "FABGUARD_TOKEN"

REASON_HELP = "RFC 5280 reason: unspecified, key_compromise, ca_compromise, affiliation_changed, superseded, cessation_of_operation"

F = TypeVar("F", bound=Callable[..., Any])

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table: the fields the API answers for the same resource")
]


class State:
    home: Path = default_home()
    server: str | None = None  # --server / FABGUARD_SERVER: work through this server's API (cli.remote)
    ca: Path | None = None  # --ca / FABGUARD_CA: the CA certificate the server's TLS certificate chains to
    group: str | None = None  # the command group this run invoked (``ca``), set by the root callback
    command: str | None = None  # the command this run invoked (``crl``), set as it starts: for messages


state = State()


@contextmanager
def opened(*, migrate: bool = False) -> Iterator[Instance]:
    """The instance at ``--home`` (its CA keys unlocked with the passphrase from the environment), closed
    afterwards. Its database must be at the code's schema (``database_behind_code`` says what to run),
    unless ``migrate`` (``db upgrade``, ``serve --migrate``) brings it there. With ``--server``, a command
    that has no way through the API says so (``needs_instance``, exit 2) instead of opening a local directory."""
    if state.server is not None:
        raise needs_instance()
    inst = Instance.open(state.home, migrate=migrate)
    try:
        yield inst
    finally:
        inst.close()


def actor(inst: Instance) -> str:
    """Who the CLI acts as: the holder of FABGUARD_TOKEN if set, else the local operator."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return tokens.authenticate_token(inst, token).actor
    return f"local:{getpass.getuser()}"


def requester(inst: Instance) -> requests.Person:
    """Who asks for an act under dual control: the holder of FABGUARD_TOKEN if set, else the local operator."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return requests.Person.of(tokens.authenticate_token(inst, token))
    name = f"local:{getpass.getuser()}"
    return requests.Person(name, name, None)


def principal(inst: Instance) -> tokens.Principal:
    """The holder of the API token in FABGUARD_TOKEN, which a dual-control step needs."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise InvalidRequest(
            f"this needs a second person's API token in {TOKEN_ENV} (dual control)", code="token_required"
        )
    return tokens.authenticate_token(inst, token)


def approver(inst: Instance) -> tokens.Principal:
    """The holder of FABGUARD_TOKEN, who must hold the approver role (a second person's approval)."""
    p = principal(inst)
    tokens.require_role(inst, p, Role.APPROVER)
    return p


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO 8601 time with its zone; a date alone (``2027-03-31``) means midnight UTC at its start."""
    if value is None:
        return None
    try:
        if len(value) == len("2027-03-31"):
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{what} {value!r} is not an ISO 8601 time (e.g. 2027-01-31T00:00:00+00:00)") from None
    if t.tzinfo is None:
        raise InvalidRequest(f"{what} needs a time zone (e.g. +00:00)")
    return t


EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE = 1, 2, 3, 4
"""Exit codes besides 0: a verification failed; a usage error; a refusal (its code says which); something
needed (the database, the key store, the server) is unavailable."""

USAGE_CODES = frozenset({"needs_instance"})
"""Codes of ours that are usage errors (exit 2), not refusals: the command line asked for something impossible."""


def needs_instance(name: str | None = None) -> InvalidRequest:
    """The error of a command (``name``, else the one running) that works on the instance directory itself,
    run with ``--server``."""
    if name is None:
        words = ["fabguard", state.group, state.command if state.command != state.group else None]
        name = f"'{' '.join(w for w in words if w)}'" if state.command else "this command"
    return InvalidRequest(
        f"{name} works on the instance directory itself: run it on the server's machine (--home), not through --server",
        code="needs_instance",
    )


def _exit_code(exc: FabGuardError | FixtureError) -> int:
    if _unavailable(exc):
        return EXIT_UNAVAILABLE
    return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_REFUSED


def _unavailable(exc: FabGuardError | FixtureError) -> bool:
    if isinstance(exc, Unavailable) or exc.code.endswith("_unavailable"):
        return True
    return isinstance(exc, FabGuardClientError) and exc.status in (502, 503, 504)


def print_json(data: object) -> None:
    """Print data as (pretty, highlighted) JSON: what the API answers for the same question."""
    console.print_json(json.dumps(data))


def fail(message: str, code: int = EXIT_USAGE, *, error: str | None = None, as_json: bool = False) -> NoReturn:
    """Print one error line on stderr and leave with exit code ``code``; with ``as_json`` (the command's
    ``--json``) also ``{"error": {"code", "message"}}`` on stdout, ``error`` its code (else ``usage``)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    if as_json:
        print(json.dumps({"error": {"code": error or "usage", "message": message}}))
    raise typer.Exit(code)


def friendly(fn: F) -> F:
    """``fn`` with FabGuard errors, the fixture SDK's errors (and a few common environment errors) shown as
    one line, not as a traceback: exit code 4 when the database, key store or server is unavailable, 2 for a
    usage error, else 3 (refused). A command called with ``--json`` also gets the error as JSON on stdout."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json") is True
        try:
            return fn(*args, **kwargs)
        except FabGuardError as exc:
            fail(f"{exc.message} [{exc.code}]", _exit_code(exc), error=exc.code, as_json=as_json)
        except FixtureError as exc:  # the client SDK's root: a server's refusal, or a package that does not open
            refused = "the server refused: " if isinstance(exc, FabGuardClientError) else ""
            fail(f"{refused}{exc.message} [{exc.code}]", _exit_code(exc), error=exc.code, as_json=as_json)
        except OSError as exc:
            fail(str(exc), as_json=as_json)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server: {exc}", EXIT_UNAVAILABLE, error="server_unavailable", as_json=as_json)

    return wrapper  # type: ignore[return-value]


def command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register ``fn`` as a command of ``group`` (named ``name``, else after ``fn``), made :func:`friendly`:
    how every fabguard command is registered, so none shows a traceback for an error of ours."""

    def register(fn: F) -> F:
        explaining = friendly(fn)

        @wraps(explaining)
        def named(*args: Any, **kwargs: Any) -> Any:
            state.command = name or fn.__name__
            return explaining(*args, **kwargs)

        group.command(name)(named)
        return explaining

    return register
