"""Many rows in one statement, handed to the database driver as they are.

SQLAlchemy processes every parameter of every row on its way to the driver; for the applier's
batches (a dozen parameters a row, hundreds of rows) that cost more than SQLite took to write
them. Here each column is converted by the converter SQLAlchemy itself would use (its type's
bind processor for the dialect, looked up once), so what is stored is exactly what an ORM or
Core insert stores; only the per-row machinery around it is skipped.

SQL is written with `?` placeholders; on PostgreSQL (psycopg) they become `%s`. Statements run
on the connection of the caller's transaction, so they commit or roll back with it. They go
past SQLAlchemy's cursor events (before/after_cursor_execute), so a tracer hooked there does
not see them; `for_statement` leaves a watched connection's statements to SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.types import TypeEngine

from store import utc_text
from store.db import UTCDateTime

Converter = Callable[[Any], Any]
# Rows per multi-row VALUES statement: within SQLite's and psycopg's limits on parameters.
CHUNK = 500


def value_rows(width: int, count: int) -> str:
    """`count` rows of `width` placeholders, for a multi-row VALUES: "(?, ?), (?, ?)"."""
    return ", ".join(["(" + ", ".join("?" * width) + ")"] * count)


# PostgreSQL takes our arrays in binary (psycopg's %b): its text form quotes and escapes each
# element with regular expressions in Python, measured 24 us a row of webhook bodies where
# binary takes 3 (docs/performance.md, "Tenth pass").
PG_ARRAY = "%b"


def _sql_for(sql: str, dialect: Dialect) -> str:
    return sql if dialect.paramstyle == "qmark" else sql.replace("?", "%s")


@contextmanager
def _cursor(connection: Connection, sql: str) -> Iterator[Any]:
    """A driver cursor on the transaction's connection. The driver's errors are raised as
    SQLAlchemy raises them (IntegrityError, OperationalError, ... with no parameters shown),
    so callers tell a deadlock or a refused value apart as they do for any statement."""
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                  hide_parameters=True, dialect=dialect) from exc
    finally:
        cursor.close()


def converter(type_: TypeEngine[Any] | None, dialect: Dialect) -> Converter | None:
    """How a value of `type_` goes to the driver: SQLAlchemy's own bind processor for the
    dialect, but for UTC times on SQLite, where `_sqlite_utc` gives the same text."""
    if type_ is None:
        return None
    convert = type_.dialect_impl(dialect).bind_processor(dialect)
    if isinstance(type_, UTCDateTime) and dialect.name == "sqlite" and convert is not None:
        return partial(_sqlite_utc, convert)
    return convert


def _sqlite_utc(slow: Converter, value: datetime) -> Any:
    """What UTCDateTime's processor on SQLite makes of an aware UTC time (naive UTC text,
    microseconds always written), at a third of its cost: a batch converts several a row.
    Any other time (another zone; naive, which it refuses) goes to `slow`, that processor."""
    if value.tzinfo is not UTC:
        return slow(value)
    return utc_text.database(value)


class Many:
    """One statement run for many rows: `sql` (or one per dialect name) whose placeholders
    take `columns` of each row (a mapping), converted as `types` say.

    `copy`, for a plain insert: the same as `COPY t (columns) FROM STDIN`, which PostgreSQL
    takes for about 60% of the CPU of psycopg's executemany (measured: 9 against 15 µs a row).
    SQLite's executemany is a loop in C: there, the statement is run once per row."""

    def __init__(self, sql: str | Mapping[str, str], columns: Sequence[str],
                 types: Mapping[str, TypeEngine[Any]], *, copy: str | None = None,
                 constants: Mapping[str, Any] | None = None) -> None:
        self._sql = sql
        self._copy = copy
        self._constants = dict(constants or {})  # values the statement itself binds
        self._columns = tuple(columns)
        self._get = itemgetter(*self._columns)
        self._types = types
        self._plans: dict[str, tuple[str, list[tuple[int, Converter]]]] = {}

    def _plan(self, dialect: Dialect) -> tuple[str, list[tuple[int, Converter]]]:
        plan = self._plans.get(dialect.name)
        if plan is None:
            sql = self._sql if isinstance(self._sql, str) else self._sql[dialect.name]
            converters = []
            for index, column in enumerate(self._columns):
                convert = converter(self._types.get(column), dialect)
                if convert is not None:
                    converters.append((index, convert))
            plan = self._plans[dialect.name] = (_sql_for(sql, dialect), converters)
        return plan

    def values(self, dialect: Dialect, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
        """Each row as the driver takes it."""
        _, converters = self._plan(dialect)
        single = len(self._columns) == 1
        # A batch's rows share a few times (its `now`, a body's received_at): each is
        # converted once.
        times: dict[datetime, Any] = {}
        out = []
        for row in rows:
            value = self._get({**self._constants, **row} if self._constants else row)
            if converters:
                value = list((value,) if single else value)
                for index, convert in converters:
                    given = value[index]
                    if given is None:
                        continue
                    if type(given) is datetime:
                        done = times.get(given)
                        if done is None:
                            done = times[given] = convert(given)
                        value[index] = done
                    else:
                        value[index] = convert(given)
            elif single:
                value = (value,)
            out.append(value)
        return out

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns each row gives, in the statement's order of parameters."""
        return self._columns

    def arrays(self, dialect: Dialect, rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        """PostgreSQL: the rows' values as one list a column, for an `unnest` of arrays."""
        return [list(c) for c in zip(*self.values(dialect, rows), strict=True)]

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement for every row, in order."""
        if not rows:
            return
        dialect = connection.dialect
        sql, _ = self._plan(dialect)
        values = self.values(dialect, rows)
        if self._copy is not None and dialect.name == "postgresql":
            with _cursor(connection, self._copy) as cursor, \
                    cursor.copy(self._copy) as copy:
                for row in values:
                    copy.write_row(row)
            return
        with _cursor(connection, sql) as cursor:
            cursor.executemany(sql, values)


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def insert_many(table: Table, columns: Sequence[str], *, as_given: Sequence[str] = ()) -> Many:
    """A plain insert of `columns` into `table`; those `as_given` go to the driver as they
    come (values already in the form the column's converter would give)."""
    marks = ", ".join("?" for _ in columns)
    return Many(f"INSERT INTO {table.name} ({_names(columns)}) VALUES ({marks})", columns,
                {c: table.c[c].type for c in columns if c not in as_given},
                copy=f"COPY {table.name} ({_names(columns)}) FROM STDIN")


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def from_named(sql: str, types: Mapping[str, TypeEngine[Any]]) -> Many:
    """`Many` for SQL written with :name parameters (as for sqlalchemy.text)."""
    return Many(_NAMED.sub("?", sql), _NAMED.findall(sql), types)


class Rows:
    """An insert of many rows in one statement, so that its `tail` (ON CONFLICT ...
    RETURNING ...) answers for all of them: a multi-row VALUES on SQLite; on PostgreSQL one
    array a column, unnested (`pg_types`: each column's type there), so the statement's text
    stays the same whatever the number of rows (psycopg parses a long one at length)."""

    def __init__(self, table: Table, columns: Sequence[str], *, pg_types: Sequence[str],
                 tail: str = "") -> None:
        self._head = f"INSERT INTO {table.name} ({_names(columns)}) "
        self._width = len(columns)
        self.columns = tuple(columns)
        arrays = ", ".join(f"{PG_ARRAY}::{type_}[]" for type_ in pg_types)
        self.unnest_sql = f"{self._head}SELECT * FROM unnest({arrays}) {tail}"
        # The same with asyncpg's $1, $2, ... (store/pg_append.py).
        numbered = ", ".join(f"${n}::{type_}[]" for n, type_ in enumerate(pg_types, 1))
        self.numbered_sql = f"{self._head}SELECT * FROM unnest({numbered}) {tail}"
        self._tail = tail
        self._many = Many("", columns, {c: table.c[c].type for c in columns})

    def arrays(self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """PostgreSQL: `unnest_sql`'s parameters for `rows`, one list a column."""
        return self._many.arrays(dialect, rows)

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """What the tail's RETURNING gives, for every chunk of rows."""
        found: list[Any] = []
        dialect = connection.dialect
        for start in range(0, len(rows), CHUNK):
            if dialect.name == "postgresql":
                sql, params = self.unnest_sql, self.arrays(dialect, rows[start:start + CHUNK])
            else:
                chunk = self._many.values(dialect, rows[start:start + CHUNK])
                sql = (self._head + "VALUES " + value_rows(self._width, len(chunk)) + " "
                       + self._tail)
                params = [value for row in chunk for value in row]
            with _cursor(connection, sql) as cursor:
                cursor.execute(sql, params)
                found.extend(cursor.fetchall())
        return found


def any_of(dialect: Dialect, column: str, values: Sequence[Any],
           pg_type: str) -> tuple[str, list[Any]]:
    """The condition that `column` is one of `values` (not empty), and its parameters:
    `IN (?, ...)` on SQLite; `= ANY(array)` on PostgreSQL (one parameter whatever the count,
    so the statement's text stays the same)."""
    if dialect.name == "postgresql":
        return f"{column} = ANY({PG_ARRAY}::{pg_type}[])", [list(values)]
    return f"{column} IN {value_rows(len(values), 1)}", list(values)


def read(connection: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """A query through the driver (`?` placeholders), its rows as the driver gives them: for
    columns that need no result processing (integers, text)."""
    sql = _sql_for(sql, connection.dialect)
    with _cursor(connection, sql) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def write(connection: Connection, sql: str, params: Sequence[Any]) -> None:
    """A statement that returns no rows, through the driver (`?` placeholders)."""
    sql = _sql_for(sql, connection.dialect)
    with _cursor(connection, sql) as cursor:
        cursor.execute(sql, params)


class Query:
    """A Core SELECT run through the driver, compiled once: each parameter converted by its
    bind processor and each column by its result processor, the ones SQLAlchemy would use,
    without its per-execution machinery (measured: a point lookup 18 -> 2 us). SQLite only,
    like `for_statement`."""

    def __init__(self, sql: str, params: Sequence[tuple[str, Any, Converter | None]],
                 columns: Sequence[tuple[str, Converter | None]]) -> None:
        self._sql = sql
        # (name, the value bound in the statement or _REQUIRED, converter)
        self._params = params
        self._keys = tuple(key for key, _ in columns)
        self._processors = [(i, p) for i, (_, p) in enumerate(columns) if p is not None]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        values = []
        for name, constant, convert in self._params:
            value = params[name] if constant is _REQUIRED else params.get(name, constant)
            values.append(convert(value) if convert is not None and value is not None
                          else value)
        with _cursor(connection, self._sql) as cursor:
            cursor.execute(self._sql, values)
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for index, process in self._processors:
            row[index] = process(row[index])
        return dict(zip(self._keys, row, strict=True))


_REQUIRED = object()  # a parameter the caller must give


def first(connection: Connection, statement: Any,
          params: Mapping[str, Any]) -> dict[str, Any] | None:
    """`connection.execute(statement, params).first()` as a dict of its columns: through
    the driver (`Query`) where it can be, else through SQLAlchemy."""
    query: Query | None = _once(connection, statement, "query",
                                lambda: _compile_query(connection.dialect, statement))
    if query is not None:
        return query.first(connection, params)
    row = connection.execute(statement, params).first()
    return None if row is None else dict(row._mapping)


def _compile_query(dialect: Dialect, statement: Any) -> Query | None:
    if dialect.paramstyle != "qmark":
        return None
    compiled: Any = statement.compile(dialect=dialect)
    names = compiled.positiontup
    if (names is None or compiled.literal_execute_params or compiled.post_compile_params
            or getattr(compiled, "escaped_bind_names", None)
            or any(compiled.binds[name].callable is not None for name in names)):
        return None
    params = [(name, _REQUIRED if bind.required else bind.value, converter(bind.type, dialect))
              for name, bind in ((name, compiled.binds[name]) for name in names)]
    columns = [(key, column.type.dialect_impl(dialect).result_processor(dialect, None))
               for key, column in statement.selected_columns.items()]
    return Query(compiled.string, params, columns)


# (statement id, what it is compiled as, dialect name) -> (the statement, what it compiled to)
_COMPILED: dict[tuple[int, Any, str], tuple[Any, Any]] = {}
_MAX_COMPILED = 512


def _once(connection: Connection, statement: Any, as_: Any, compile: Callable[[], Any]) -> Any:
    """`compile()`'s result for `statement` (compiled `as_` this, on this dialect), made once;
    None on a connection something watches (a tracer on the cursor events sees every
    statement: what goes past SQLAlchemy is left to it)."""
    if connection.dispatch.before_cursor_execute or connection.dispatch.after_cursor_execute:
        return None
    key = (id(statement), as_, connection.dialect.name)
    found = _COMPILED.get(key)
    if found is None or found[0] is not statement:  # an id may be reused once freed
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.clear()
        found = _COMPILED[key] = (statement, compile())
    return found[1]


def for_statement(connection: Connection, statement: Any,
                  keys: frozenset[str]) -> Many | None:
    """A SQLAlchemy Core statement, compiled once for these parameter names, as a `Many`
    (each value converted by the bind processor SQLAlchemy would use). SQLite only (its `?`
    placeholders are what `Many` takes), and only for statements with nothing computed per
    row (no Python-side column defaults, no expanding or literal parameters, no RETURNING),
    on a connection nothing watches: for anything else None, and the caller runs it through
    SQLAlchemy."""
    many: Many | None = _once(connection, statement, keys,
                              lambda: _compile(connection.dialect, statement, keys))
    return many


def _compile(dialect: Dialect, statement: Any, keys: frozenset[str]) -> Many | None:
    if dialect.paramstyle != "qmark" or not isinstance(statement, ClauseElement):
        return None
    try:
        compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(keys),
                                          for_executemany=True)
    except Exception:  # e.g. a name that is no column: SQLAlchemy says so when it runs
        return None
    names = compiled.positiontup
    if (names is None or compiled.insert_prefetch or compiled.update_prefetch
            or compiled.literal_execute_params or compiled.post_compile_params
            or getattr(compiled, "escaped_bind_names", None)
            or getattr(compiled, "effective_returning", None)):
        return None
    constants: dict[str, Any] = {}
    for name in names:
        bind = compiled.binds[name]
        if name not in keys:
            if bind.callable is not None or (bind.value is None and bind.required):
                return None
            constants[name] = bind.value  # bound in the statement itself (a .values(x=0))
    return Many(compiled.string, names, {name: compiled.binds[name].type for name in names},
                constants=constants)
