"""What every subcommand shares: the instance it works on, who is acting, how errors are shown."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fabguard.domain.errors import FabGuardError, InvalidRequest
from fabguard.service import tokens
from fabguard.service.config import default_home
from fabguard.service.instance import Instance

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

TOKEN_ENV = "FABGUARD_TOKEN"

F = TypeVar("F", bound=Callable[..., Any])


class State:
    home: Path = default_home()


state = State()


@contextmanager
def opened() -> Iterator[Instance]:
    inst = Instance.open(state.home)
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


def principal(inst: Instance) -> tokens.Principal:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise InvalidRequest(
            f"this needs a second person's API token in {TOKEN_ENV} (dual control)", code="token_required"
        )
    return tokens.authenticate_token(inst, token)


def parse_time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{what} {value!r} is not an ISO 8601 time (e.g. 2027-01-31T00:00:00+00:00)") from None
    if t.tzinfo is None:
        raise InvalidRequest(f"{what} needs a time zone (e.g. +00:00)")
    return t


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def friendly(fn: F) -> F:
    """Show FabGuard errors (and a few common environment errors) as one line, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fabguard.fixture.client import FabGuardClientError

        try:
            return fn(*args, **kwargs)
        except FabGuardError as exc:
            fail(f"{exc.message} [{exc.code}]")
        except FabGuardClientError as exc:
            fail(f"the server refused: {exc.message} [{exc.code}]")
        except OSError as exc:
            fail(str(exc))
        except Exception as exc:
            import httpx

            if isinstance(exc, httpx.HTTPError):
                fail(f"cannot reach the server: {exc}")
            raise

    return wrapper  # type: ignore[return-value]
