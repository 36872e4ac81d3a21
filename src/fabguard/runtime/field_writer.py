"""The server process's field-check writer: one thread that decides the field checks of concurrent requests
together (ADR 0015), as the provisioning writer (``runtime.group_commit``) does for units: both are
``runtime.group_writer``'s loop.

Request threads prepare their answers (``service.field.checks.prepare``: the nonce's MAC and expiry, the
cryptography) and hand them to :meth:`FieldWriter.run`; the writer takes whatever is queued when it is
free, up to ``Limits.field_group_checks`` answers (a request's stay together), and decides them with
``decide_group``: one transaction, one commit. Nothing waits for a group to fill. Every request gets its
outcomes only after their commit. Until :meth:`start` and after :meth:`stop`, :meth:`run` decides in the
caller's thread. If the writer's thread itself ends (a bug, not a failed group: that is the group's
outcome), every request it holds or that comes later is answered ``field_writer_down`` (503).
"""

from __future__ import annotations

from functools import partial

from fabguard.domain.errors import Unavailable
from fabguard.runtime.group_writer import GroupWriter
from fabguard.service.core.instance import Instance
from fabguard.service.field.checks import Job, Outcome, Runner, decide_group


class FieldWriterDown(Unavailable):
    """This process's field writer has stopped: nothing of the request was decided."""

    code = "field_writer_down"

    def __init__(
        self,
        message: str = "this server process's field-check writer has stopped; nothing was decided: send the "
        "answers again (to another server process, or once this one is restarted)",
    ) -> None:
        super().__init__(message)


class FieldWriter(GroupWriter[Job, Outcome]):
    """One process's field-check writer; ``decide`` decides a group (a test may pass another)."""

    def __init__(self, inst: Instance, max_checks: int | None = None, *, decide: Runner | None = None) -> None:
        super().__init__(
            decide if decide is not None else partial(decide_group, inst),
            max_checks if max_checks is not None else inst.limits.field_group_checks,
            down=FieldWriterDown,
            what="field-check",
            thread_name="fabguard-field-writer",
        )

    @property
    def checks(self) -> int:
        """Checks in the groups the writer's thread decided (for the bench and the tests)."""
        return self.jobs


__all__ = ["FieldWriter", "FieldWriterDown"]
