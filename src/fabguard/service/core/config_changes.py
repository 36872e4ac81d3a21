"""Changes of an instance's configuration go into the ledger like every other act (issue 26: an auditor sees who
moved the published URLs or the HTTPS listener's certificate, from what to what, and when).

``instance.json`` is a file, not a table: the change is checked and written first, then its event; if the event
cannot be written (the database unavailable, say) the file is put back as it was and the error raised, so the
file never holds a change the ledger does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fabguard.service.core.config import InstanceConfig, load_config
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event

T = TypeVar("T")
URL_FIELDS = ("public_url", "pki_url", "crl_base_url")
TLS_FIELDS = (
    "tls_cert",
    "tls_key",
    "tls_key_passphrase_file",
    "tls_ca",
    "tls_pkcs11_key",
    "tls_pkcs11_module",
)


def changed_fields(before: InstanceConfig, after: InstanceConfig, fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for each of ``fields`` that differs."""
    old, new = dataclasses.asdict(before), dataclasses.asdict(after)
    return {f: {"from": old[f], "to": new[f]} for f in fields if old[f] != new[f]}


def change_config(
    inst: Instance,
    home: Path,
    kind: str,
    fields: Sequence[str],
    change: Callable[[], T],
    *,
    actor: str,
) -> T:
    """Run ``change`` (which checks and saves ``home``'s configuration, raising on a refusal with nothing
    changed) and record ``kind`` with what changed among ``fields``, as the file reads before and after it;
    nothing is recorded if nothing changed. The change's own result is returned as it is (the configuration
    saved, and whatever else it made, e.g. the listener's credentials)."""
    before = load_config(home)
    done = change()
    changed = changed_fields(before, load_config(home), fields)
    if not changed:
        return done
    try:
        with inst.db.transaction() as s:
            append_event(s, kind, at=inst.clock(), actor=actor, detail={"changed": changed})
    except BaseException:
        before.save(home)
        raise
    return done


__all__ = ["TLS_FIELDS", "URL_FIELDS", "change_config", "changed_fields"]
