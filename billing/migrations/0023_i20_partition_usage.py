"""Usage records become a table partitioned by month of created_at (PostgreSQL only; SQLite keeps one table).

The conversion reads the table as it stands from the catalog — columns, constraints, indexes — so it holds
whatever migrations ran before it. It builds a new table beside the old one, copies the rows, drops the old
and takes its name; constraints and indexes are created last, under their old names, so later migrations
(RemoveIndex, AddIndex, AlterField) find them. A partitioned table's primary key and unique constraints
must contain the partition key: created_at is appended where missing, and a comment on the constraint
says so, which is how the reverse knows what to take out again.

Self-contained on purpose (a migration must not change when billing/usage/partitions.py does)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import migrations

TABLE = "billing_usagerecord"
PARTITION_KEY = "created_at"
APPENDED = "i20: created_at appended for partitioning"
# Fixed-width types by alignment, widest first; variable-length ones (typlen < 0) after all of them.
ALIGNMENT_ORDER = {"d": 0, "i": 1, "s": 2, "c": 3}
MONTHS_AHEAD = 3


def _month(value: datetime) -> datetime:
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def _next_month(value: datetime) -> datetime:
    return datetime(value.year + value.month // 12, value.month % 12 + 1, 1, tzinfo=UTC)


def _columns(cursor, table: str) -> list[dict]:
    cursor.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
               t.typlen, t.typalign, a.attidentity, a.attnum,
               CASE WHEN a.attcollation <> t.typcollation THEN (SELECT quote_ident(collname) FROM pg_collation
                                                                 WHERE oid = a.attcollation) END
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        [table],
    )
    names = ("name", "type", "not_null", "default", "typlen", "typalign", "identity", "attnum", "collation")
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _aligned(columns: list[dict]) -> list[dict]:
    """8-byte columns first, then 4, 2 and 1-byte ones, variable-length last: no padding between them."""
    return sorted(columns, key=lambda c: (c["typlen"] < 0, ALIGNMENT_ORDER[c["typalign"]] if c["typlen"] > 0 else 0,
                                          c["attnum"]))


def _column_sql(column: dict, default: str | None) -> str:
    sql = f'"{column["name"]}" {column["type"]}'
    if column["collation"]:
        sql += f" COLLATE {column['collation']}"
    if column["not_null"]:
        sql += " NOT NULL"
    if default is not None:
        sql += f" DEFAULT {default}"
    return sql


def _constraints(cursor, table: str) -> list[tuple[str, str, str, str | None]]:
    """(name, kind, definition, comment) of each constraint: primary key and unique first, checks, foreign keys."""
    cursor.execute(
        """
        SELECT conname, contype, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint')
        FROM pg_constraint WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'c', 'f', 'x')
        ORDER BY position(contype IN 'pucfx'), conname
        """,
        [table],
    )
    return cursor.fetchall()


def _indexes(cursor, table: str) -> list[tuple[str, bool, str, str | None]]:
    """(name, unique, definition, comment) of each index that no constraint owns."""
    cursor.execute(
        """
        SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class')
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %s::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
        ORDER BY c.relname
        """,
        [table],
    )
    return cursor.fetchall()


def _key_list_end(definition: str, start: int) -> int:
    """The index of the parenthesis that closes the key list opening at or after `start`."""
    depth = 0
    for position in range(definition.index("(", start), len(definition)):
        if definition[position] == "(":
            depth += 1
        elif definition[position] == ")":
            depth -= 1
            if depth == 0:
                return position
    raise ValueError(f"unbalanced definition: {definition}")


def _with_partition_key(definition: str, start: int) -> tuple[str, bool]:
    """The definition with created_at appended to its key list, unless it names it already."""
    end = _key_list_end(definition, start)
    opening = definition.index("(", start)
    keys = [key.strip().strip('"') for key in definition[opening + 1:end].split(",")]
    if PARTITION_KEY in keys:
        return definition, False
    return f"{definition[:end]}, {PARTITION_KEY}{definition[end:]}", True


def _without_partition_key(definition: str, start: int) -> str:
    end = _key_list_end(definition, start)
    head = definition[:end].rstrip()
    suffix = f", {PARTITION_KEY}"
    assert head.endswith(suffix), definition
    return head[: -len(suffix)] + definition[end:]


def _months(cursor, table: str) -> list[datetime]:
    cursor.execute(f"SELECT DISTINCT date_trunc('month', {PARTITION_KEY} AT TIME ZONE 'UTC') FROM {table}")
    months = {month.replace(tzinfo=UTC) for (month,) in cursor.fetchall()}
    month = _month(datetime.now(UTC))
    for _ in range(MONTHS_AHEAD + 1):
        months.add(month)
        month = _next_month(month)
    return sorted(months)


def _rebuild(cursor, *, partitioned: bool) -> None:
    new = f"{TABLE}__rebuilt"
    cursor.execute(
        "SELECT conrelid::regclass::text FROM pg_constraint WHERE confrelid = %s::regclass AND contype = 'f'", [TABLE]
    )
    if referencing := cursor.fetchall():
        raise RuntimeError(f"{TABLE} is referenced by foreign keys from {referencing}: convert those first")
    columns = _columns(cursor, TABLE)
    constraints = _constraints(cursor, TABLE)
    indexes = _indexes(cursor, TABLE)
    if any(kind == "x" for _, kind, _, _ in constraints):
        raise RuntimeError(f"{TABLE} has an exclusion constraint: not handled")
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
    (old_sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}")
    (max_id,) = cursor.fetchone()
    if old_sequence:
        cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {old_sequence}")
        max_id = max(max_id, cursor.fetchone()[0])

    sequence = f"{TABLE}__rebuilt_id_seq"
    if partitioned:
        # PostgreSQL 15 refuses an identity column on a partitioned table: a plain sequence default instead,
        # which Django cannot tell apart (it inserts without an id and reads it back with RETURNING).
        cursor.execute(f"CREATE SEQUENCE {sequence} AS bigint")
        cursor.execute("SELECT setval(%s, %s, %s)", [sequence, max(max_id, 1), max_id > 0])
        ordered = _aligned(columns)
    else:
        ordered = columns
    definitions = []
    for column in ordered:
        default = column["default"]
        if column["name"] == "id":
            default = f"nextval('{sequence}'::regclass)" if partitioned else None
        definitions.append(_column_sql(column, default))
    partition_by = f" PARTITION BY RANGE ({PARTITION_KEY})" if partitioned else ""
    cursor.execute(f"CREATE TABLE {new} ({', '.join(definitions)}){partition_by}")
    if partitioned:
        for month in _months(cursor, TABLE):
            cursor.execute(
                f"CREATE TABLE {TABLE}_p{month:%Y%m} PARTITION OF {new} FOR VALUES FROM (%s) TO (%s)",
                [month.isoformat(), _next_month(month).isoformat()],
            )
        cursor.execute(f"CREATE TABLE {TABLE}_pdefault PARTITION OF {new} DEFAULT")

    names = ", ".join(f'"{c["name"]}"' for c in columns)
    cursor.execute(f"INSERT INTO {new} ({names}) SELECT {names} FROM {TABLE}")
    cursor.execute(f"DROP TABLE {TABLE}")  # its identity sequence goes with it
    cursor.execute(f"ALTER TABLE {new} RENAME TO {TABLE}")
    if partitioned:
        cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {TABLE}_id_seq")
        cursor.execute(f"ALTER SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id")
    else:
        cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY "
                       f"(START WITH {max_id + 1})")

    for name, kind, definition, comment in constraints:
        appended = False
        if kind in ("p", "u") and partitioned:
            definition, appended = _with_partition_key(definition, 0)
        elif kind in ("p", "u") and comment == APPENDED:
            definition = _without_partition_key(definition, 0)
        cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')
        if appended:
            cursor.execute(f'COMMENT ON CONSTRAINT "{name}" ON {TABLE} IS %s', [APPENDED])
    for name, unique, definition, comment in indexes:
        appended = False
        # A partitioned parent's indexes read "ON ONLY table"; on a plain table ONLY has no place.
        definition = definition.replace(" ON ONLY ", " ON ", 1)
        if unique and partitioned:
            definition, appended = _with_partition_key(definition, definition.index(" USING "))
        elif unique and comment == APPENDED:
            definition = _without_partition_key(definition, definition.index(" USING "))
        cursor.execute(definition)
        if appended:
            cursor.execute(f'COMMENT ON INDEX "{name}" IS %s', [APPENDED])
    cursor.execute(f"ANALYZE {TABLE}")


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [TABLE])
        if cursor.fetchone()[0] == "p":
            return
        # Rows of accounts made earlier in this transaction hold pending deferred foreign key checks, and
        # PostgreSQL refuses to drop a table with pending trigger events.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _rebuild(cursor, partitioned=True)
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def unpartition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [TABLE])
        if cursor.fetchone()[0] != "p":
            return
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _rebuild(cursor, partitioned=False)
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0022_i20_compact_usage"),
    ]

    operations = [
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
