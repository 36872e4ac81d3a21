"""What ``fabguard-station`` exits with: one code per thing a test executive branches on (docs/station.md).

A step that uploads or provisions reads the exit code alone; ``--json`` says the rest (the refusal's code
and message, what stayed in the spool).
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    DONE = 0  # the server stored, issued or answered what was asked
    FAILED = 1  # a bug in this command (a traceback on stderr): report it
    USAGE = 2  # the command line, a file, the credentials or a PIN: fix the call, do not retry as it is
    REFUSED = 3  # the server refused (its code printed, and in --json): a decision, retrying changes nothing
    UNAVAILABLE = 4  # the server could not be reached or answered busy (transport, TLS, 5xx): retry later;
    # an upload stays in the spool and ``spool flush`` sends it
    STATION = 5  # the station itself: the PKCS#11 token (no such token, wrong PIN), the spool's disk


MEANING = {
    Exit.DONE: "done",
    Exit.FAILED: "failed (a bug: report it)",
    Exit.USAGE: "usage error",
    Exit.REFUSED: "refused by the server",
    Exit.UNAVAILABLE: "server unavailable: retry later (uploads stay spooled)",
    Exit.STATION: "station error (PKCS#11 token, spool disk)",
}

__all__ = ["MEANING", "Exit"]
