"""The projector's pace: a quarter of a second between rounds while nothing comes in, a second while a
line keeps adding events (a round's fixed cost is paid once a second rather than four times), none
while a backlog is left; reads fold what is pending themselves, so they never see the projector's pace."""

from __future__ import annotations

import pytest

from fabguard.domain.values import FixtureId, SiteId
from fabguard.runtime.workers import Projector
from fabguard.service.analytics import dashboard_queries
from fabguard.service.catalog import fixtures, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import event_count
from tests.runtime.test_projector_lease import cursor, upload


def test_the_projector_waits_longer_while_events_keep_coming(
    any_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = any_instance
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="test")
    p = Projector(inst)  # rounds run here, not on its thread
    try:
        p.run_round()  # the setup's events
        p.run_round()
        assert p.last_round == 0 and p.wait_seconds() == 0.25  # idle: the next events are seen soon
        upload(inst, 0, 3)
        p.run_round()
        assert p.last_round > 0 and p.wait_seconds() == 1.0  # busy: the next round folds a second's worth
        p.run_round()
        assert p.wait_seconds() == 0.25
        # A round that folds its fill leaves more behind: the next one comes at once.
        monkeypatch.setattr(dashboard_queries, "READ_CATCH_UP", 4)
        upload(inst, 10, 5)
        p.run_round()
        assert p.last_round >= 4 and p.wait_seconds() == 0.0
        p.run_round()
        with inst.db.read() as s:
            assert cursor(inst) == event_count(s)
        # A read never waits for the projector's pace: it folds what is pending first.
        upload(inst, 20, 2)
        assert dashboard_queries.refresh(inst) == 0
    finally:
        p.lease.release()
