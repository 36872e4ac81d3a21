"""The server process's provisioning writer: one thread that decides the units of concurrent requests together.

Request threads hand their units (``service/provisioning/group.py``'s ``Job``) to :meth:`GroupCommitter.run` and
wait; an event loop hands them to :meth:`GroupCommitter.submit` with a callback and awaits a future. The writer
takes whatever is queued when it is free, up to ``Limits.group_commit_units`` units (a request's units stay
together), and decides them with ``run_jobs``: one transaction and one commit for the group, each unit decided
on its own. Every request gets its own units' outcomes, and only after their commit. The loop, its bounds
and what happens when its thread dies (``provisioning_writer_down``, 503, for every request it holds and
every later one; the health routes say the process is down) are ``runtime.group_writer``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from fabguard.domain.errors import Unavailable
from fabguard.runtime.group_writer import GroupWriter
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.group import Job, Outcome, Runner, run_jobs

# Told of every decided group, its jobs and their outcomes in order (the API's metrics count them).
Observer = Callable[[Sequence[Job], Sequence[Outcome]], None]

# Told a submitted request's outcomes, in the writer's thread, after their commit (``GroupCommitter.submit``).
Callback = Callable[[list[Outcome]], None]


class WriterDown(Unavailable):
    """This process's provisioning writer has stopped: nothing of the request was decided."""

    code = "provisioning_writer_down"

    def __init__(
        self,
        message: str = "this server process's provisioning writer has stopped; nothing was decided: send the "
        "request again (to another server process, or once this one is restarted)",
    ) -> None:
        super().__init__(message)


class GroupCommitter(GroupWriter[Job, Outcome]):
    """One process's provisioning writer. ``decide`` decides a group (``run_jobs`` on ``inst``; a test may
    pass another to make a group fail, or the writer die)."""

    def __init__(self, inst: Instance, max_units: int | None = None, *, decide: Runner | None = None) -> None:
        super().__init__(
            decide if decide is not None else partial(run_jobs, inst),
            max_units if max_units is not None else inst.limits.group_commit_units,
            down=WriterDown,
            what="provisioning",
            thread_name="fabguard-group-commit",
        )

    @property
    def units(self) -> int:
        """Units in the groups the writer's thread decided (for the bench and the tests)."""
        return self.jobs


__all__ = ["Callback", "GroupCommitter", "Job", "Observer", "Outcome", "WriterDown"]
