"""people: every API token belongs to a person; dual control compares people

Existing tokens get their people this way: **one person per distinct token name**. Until now dual
control judged "the same person" by token id or token name, so two tokens under one name were already
one person and two names were two people: this mapping keeps every past and pending decision exactly
as it was judged (no request someone could decide becomes one they cannot, and the other way round).
Each person holds the roles of their name's tokens that still work (neither revoked nor expired), the
site of their newest working operator token (an older operator token of another site keeps its own
site), no contact, and is active. ``approving_since`` is the creation of their first approver or
admin token, revoked or not. A token's maker (``made_by_person``) is the person of the token its
``token.created`` event names as actor; none where the local operator made it.

Pending requests keep working: an approval request's person is its requester token's person; a quota
raise's and a firmware release's are the person of the token named in ``requested_by`` /
``uploaded_by`` (``name (token id)``), none for the local operator (who acts without a token, and is
judged by name as before).

Revision ID: 0017
Revises: 0016
"""

import json
import re
import secrets
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# The order roles are stored in (service/access/people.py writes them the same way).
ROLE_ORDER = ("admin", "engineer", "approver", "auditor", "operator", "field")
APPROVING = ("admin", "approver")
_TOKEN_ACTOR = re.compile(r" \(([0-9a-f]{16})\)\Z")

tokens_t = sa.table(
    "api_tokens",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("role", sa.String),
    sa.column("site_id", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("revoked_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("person_id", sa.String),
    sa.column("made_by_person", sa.String),
)
people_t = sa.table(
    "people",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("contact", sa.String),
    sa.column("roles", sa.String),
    sa.column("site_id", sa.String),
    sa.column("state", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("created_by", sa.String),
    sa.column("approving_since", sa.DateTime(timezone=True)),
)


def _utc(t: Any) -> datetime | None:
    if t is None:
        return None
    found: datetime = datetime.fromisoformat(t) if isinstance(t, str) else t
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found


def _works(token: Any, now: datetime) -> bool:
    expires = _utc(token.expires_at)
    return token.revoked_at is None and (expires is None or expires > now)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("contact", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("site_id", sa.String(length=63), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("approving_since", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('active', 'suspended')", name=op.f("ck_people_state_known")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_people_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("name", name=op.f("uq_people_name")),
    )
    op.add_column("api_tokens", sa.Column("person_id", sa.String(length=32), nullable=True))
    op.add_column("api_tokens", sa.Column("made_by_person", sa.String(length=32), nullable=True))
    op.add_column("approval_requests", sa.Column("requester_person", sa.String(length=32), nullable=True))
    op.add_column("quota_changes", sa.Column("requester_person", sa.String(length=32), nullable=True))
    op.add_column("firmware_releases", sa.Column("uploader_person", sa.String(length=32), nullable=True))
    _people_from_token_names()
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("person_id", existing_type=sa.String(length=32), nullable=False)
        batch.create_foreign_key(batch.f("fk_api_tokens_person_id_people"), "people", ["person_id"], ["id"])
        batch.create_index(batch.f("ix_api_tokens_person_id"), ["person_id"], unique=False)


def _people_from_token_names() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC)
    by_name: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(sa.select(tokens_t).order_by(tokens_t.c.created_at, tokens_t.c.id)):
        by_name[row.name].append(row)
    person_of_token: dict[str, str] = {}
    for name, rows in by_name.items():
        working = [r for r in rows if _works(r, now)]
        held = {r.role for r in working}
        operators = [r for r in working if r.role == "operator" and r.site_id is not None]
        approving = [t for r in rows if r.role in APPROVING and (t := _utc(r.created_at)) is not None]
        person_id = secrets.token_hex(8)
        conn.execute(
            people_t.insert().values(
                id=person_id,
                name=name,
                contact="",
                roles=",".join(r for r in ROLE_ORDER if r in held),
                site_id=operators[-1].site_id if operators else None,
                state="active",
                created_at=_utc(rows[0].created_at),
                created_by="migration 0017",
                approving_since=min(approving) if approving else None,
            )
        )
        for r in rows:
            person_of_token[r.id] = person_id
            conn.execute(tokens_t.update().where(tokens_t.c.id == r.id).values(person_id=person_id))
    _makers(conn, person_of_token)
    _pending_people(conn, person_of_token)


def _makers(conn: Any, person_of_token: dict[str, str]) -> None:
    """Each token's maker, where its ``token.created`` event names a token (``name (id)``) as the actor
    (or, for a token made through an approval, as ``requested_by``: the requester got the secret)."""
    events = sa.table("events", sa.column("kind", sa.String), sa.column("actor", sa.String), sa.column("detail"))
    for actor, detail in conn.execute(
        sa.select(events.c.actor, events.c.detail).where(events.c.kind == "token.created")
    ):
        facts = json.loads(detail or "{}")
        found = _TOKEN_ACTOR.search(str(facts.get("requested_by", actor or "")))
        made = facts.get("token_id")
        if found and found.group(1) in person_of_token and made in person_of_token:
            conn.execute(
                tokens_t.update().where(tokens_t.c.id == made).values(made_by_person=person_of_token[found.group(1)])
            )


def _pending_people(conn: Any, person_of_token: dict[str, str]) -> None:
    approvals = sa.table(
        "approval_requests", sa.column("id", sa.Integer), sa.column("requester_token"), sa.column("requester_person")
    )
    for row in conn.execute(sa.select(approvals.c.id, approvals.c.requester_token)):
        if row.requester_token in person_of_token:
            conn.execute(
                approvals.update()
                .where(approvals.c.id == row.id)
                .values(requester_person=person_of_token[row.requester_token])
            )
    for table, key, actor, person in (
        ("quota_changes", "id", "requested_by", "requester_person"),
        ("firmware_releases", "id", "uploaded_by", "uploader_person"),
    ):
        t = sa.table(table, sa.column(key), sa.column(actor), sa.column(person))
        for row in conn.execute(sa.select(t.c[key], t.c[actor])):
            found = _TOKEN_ACTOR.search(row[1] or "")
            if found and found.group(1) in person_of_token:
                conn.execute(t.update().where(t.c[key] == row[0]).values({person: person_of_token[found.group(1)]}))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index(batch.f("ix_api_tokens_person_id"))
        batch.drop_constraint(batch.f("fk_api_tokens_person_id_people"), type_="foreignkey")
        batch.drop_column("made_by_person")
        batch.drop_column("person_id")
    for table, column in (
        ("firmware_releases", "uploader_person"),
        ("quota_changes", "requester_person"),
        ("approval_requests", "requester_person"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
    op.drop_table("people")
