"""Engine-specific bulk writes: upserts and merges of many rows, straight to the driver on each engine.

SQLite gets ``INSERT .. ON CONFLICT`` by ``executemany``; PostgreSQL one ``INSERT .. SELECT .. FROM
unnest(arrays) .. ON CONFLICT`` for a few rows (one round trip) and a ``COPY`` into a temporary table then
one ``INSERT .. SELECT .. ON CONFLICT`` from it for many, and ``= ANY(array)`` for long ``IN`` lists.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Float, Table, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fabguard.store.base import Base

_T = TypeVar("_T")

# How ``merge`` combines a new value with a row already there. SHIFTED_SUM and SHIFTED_SQUARES add
# sums of (v - ref) and (v - ref)^2 taken about the new row's ``ref`` to those of the row there, about
# its own ``ref`` (kept: KEEP), so sums of squares never suffer from a large mean (2.4e9 Hz +- 1 Hz).
ADD, REPLACE, LEAST, GREATEST, KEEP = "add", "replace", "least", "greatest", "keep"
SHIFTED_SUM, SHIFTED_SQUARES = "shifted_sum", "shifted_squares"


# Rows up to which a merge on PostgreSQL sends arrays (one round trip) rather than a COPY (three).
FEW_ROWS = 200


def chunks(items: Sequence[_T], size: int = 500) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def among_size(s: Session) -> int:
    """Values per ``among``: a few hundred parameters on SQLite; one array, so a whole batch, on PostgreSQL."""
    return 5000 if s.get_bind().dialect.name == "postgresql" else 500


def among(s: Session, column: Any, values: Sequence[Any]) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``, one parameter, so that the driver and
    the server see the same short statement every time rather than a new list of hundreds to parse."""
    if s.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _insert(s: Session, model: type[Base]) -> Any:
    dialect = s.get_bind().dialect.name
    table = cast(Table, model.__table__)
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def upsert(s: Session, model: type[Base], keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` or replace every other column of the rows already there (few rows, typed columns)."""
    if not rows:
        return
    stmt = _insert(s, model)
    table = cast(Table, model.__table__)
    others = [c.name for c in table.columns if c.name not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys], set_={c: stmt.excluded[c] for c in others}
    )
    for chunk in chunks(rows, 1000):
        s.execute(stmt, list(chunk))


@functools.lru_cache(maxsize=64)
def _merge_sql(
    model: type[Base], dialect: str, columns: tuple[str, ...], keys: tuple[str, ...], how: tuple[str, ...]
) -> tuple[str, ...]:
    """The statements of a ``merge``: on SQLite an ``INSERT .. ON CONFLICT (keys) DO UPDATE`` of one row
    (for ``executemany``); on PostgreSQL that ``INSERT`` of every row at once from one array per column
    (``unnest``: one round trip, for a few rows), then, for many rows, the creation of a temporary table
    (once per connection, emptied at each commit), the ``COPY`` into it and that ``INSERT`` from it (three
    round trips, but the driver sends the rows far faster than it builds arrays of them).

    Every name here is one of the models' own (no input reaches this text); values are parameters."""
    table_ = cast(Table, model.__table__)
    table = table_.name
    on_sqlite = dialect == "sqlite"
    shift = f'(excluded."ref" - "{table}"."ref")'
    combine = {
        ADD: "{old} + {new}",
        REPLACE: "{new}",
        KEEP: "{old}",
        LEAST: ("min" if on_sqlite else "least") + "({old}, {new})",
        GREATEST: ("max" if on_sqlite else "greatest") + "({old}, {new})",
        SHIFTED_SUM: f'{{old}} + {{new}} + excluded."n" * {shift}',
        SHIFTED_SQUARES: f'{{old}} + {{new}} + 2 * {shift} * excluded."total" + excluded."n" * {shift} * {shift}',
    }
    others = [c for c in columns if c not in keys] if how else []
    sets = [
        f'"{c}" = ' + combine[h].format(old=f'"{table}"."{c}"', new=f'excluded."{c}"')
        for c, h in zip(others, how, strict=True)
    ]
    names = ", ".join(f'"{c}"' for c in columns)
    target = ", ".join(f'"{k}"' for k in keys)
    action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
    if on_sqlite:
        values = "VALUES (" + ", ".join(["?"] * len(columns)) + ")"
        return (f'INSERT INTO "{table}" ({names}) {values} ON CONFLICT ({target}) {action}',)
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(f"%s::{table_.c[c].type.compile(dialect=pg)}[]" for c in columns)
    temp = f"projector_{table}"
    create = f'CREATE TEMPORARY TABLE IF NOT EXISTS "{temp}" ON COMMIT DELETE ROWS AS SELECT {names} FROM "{table}"'  # noqa: S608
    return (
        f'INSERT INTO "{table}" ({names}) SELECT {names} FROM unnest({arrays}) AS v({names}) '  # noqa: S608
        f"ON CONFLICT ({target}) {action}",
        f"{create} WITH NO DATA",
        f'COPY "{temp}" ({names}) FROM STDIN',
        f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{temp}" ON CONFLICT ({target}) {action}',  # noqa: S608
    )


@functools.lru_cache(maxsize=64)
def _float_columns(model: type[Base], columns: tuple[str, ...]) -> frozenset[int]:
    """The positions of ``columns`` that are floating point: their arrays are sent as floats throughout
    (the driver sends no array of ints and floats mixed)."""
    table = cast(Table, model.__table__)
    return frozenset(i for i, c in enumerate(columns) if isinstance(table.c[c].type, Float))


def merge(
    s: Session,
    model: type[Base],
    columns: Sequence[str],
    keys: Sequence[str],
    how: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Upsert ``rows`` (tuples of ``columns``, plain ints, floats, strings and None, no key twice), combining
    each non-key column with a row already there as ``how`` says (no ``how``: keep the row there).

    The bulk of a batch, so straight to the driver, without the ORM's per-row parameter handling: one
    ``executemany`` on SQLite; on PostgreSQL one ``INSERT .. SELECT .. FROM unnest(arrays)`` for up to
    ``FEW_ROWS`` rows, else a ``COPY`` then one ``INSERT .. SELECT``."""
    if not rows:
        return
    conn = s.connection()
    statements = _merge_sql(model, conn.dialect.name, tuple(columns), tuple(keys), tuple(how))
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(statements[0], list(rows))
        return
    unnest, create, copy_in, insert = statements
    with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
        if len(rows) > FEW_ROWS:
            cur.execute(create)
            with cur.copy(copy_in) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(insert)
            return
        floats = _float_columns(model, tuple(columns))
        arrays = [
            [None if v is None else float(v) for v in column] if i in floats else list(column)  # one type per array
            for i, column in enumerate(zip(*rows, strict=True))
        ]
        cur.execute(unnest, arrays)
