"""``list_events(since=...)``: what ``GET /api/v1/events?since=`` and ``fabguard events --since`` read, on both engines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fabguard.domain.values import SiteId
from fabguard.service.catalog import product_catalog
from fabguard.service.core import events
from fabguard.service.core.instance import Instance


def test_since_keeps_the_events_at_or_after_a_time_with_any_offset(any_instance: Instance) -> None:
    product_catalog.create_site(any_instance, site_id=SiteId("cm-a"), name="A", actor="test")
    made = events.list_events(any_instance, kind="site.created")
    assert len(made) == 1
    at = datetime.fromisoformat(made[0]["at"])
    assert events.list_events(any_instance, kind="site.created", since=at) == made
    in_tokyo = at.astimezone(timezone(timedelta(hours=9)))  # the same instant, written with another offset
    assert events.list_events(any_instance, kind="site.created", since=in_tokyo) == made
    assert events.list_events(any_instance, kind="site.created", since=at + timedelta(seconds=1)) == []
    before = events.list_events(any_instance, since=at - timedelta(days=1))
    assert before == events.list_events(any_instance)  # every event so far
