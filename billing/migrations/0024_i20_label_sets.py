"""A record's labels (feature, environment, tags, provider, model and the rest) move to a label set
stored once per distinct combination per account; the record keeps a 4-byte reference (docs/scaling.md
"Bytes per record").

PostgreSQL: the label sets are made by one INSERT … SELECT DISTINCT over the ledger, then the ledger is copied
once into a new partitioned table with each row's label set id and without the label columns (columns in
alignment order, constraints and indexes under their old names, as 0023 did). Plan it like 0023: a copy of
the whole table under an exclusive lock. SQLite (the demo) takes Django's own steps, the rows updated in
Python. Both ways reverse.

The digest is billing.usage.labels' own, written out again here so that this migration never changes when
that module does; a test holds the two together."""

import hashlib
import importlib
import re
import uuid

import django.db.models.deletion
from django.db import migrations, models

# 0023's catalog readers (columns, constraints, indexes, months): a migration never changes once applied.
partitioning = importlib.import_module("billing.migrations.0023_i20_partition_usage")

TABLE = "billing_usagerecord"
LABEL_SETS = "billing_usagelabelset"
LABEL_FIELDS = ("feature", "environment", "tags", "provider", "model", "served_model", "operation", "usage_source",
                "route", "requested_model", "downgraded_from")

ROUTING_LABELS = ("route", "requested_model", "downgraded_from")


def _digest_sql(alias):
    parts = []
    for name in LABEL_FIELDS:
        column = f"{alias}.{name}"
        if name == "tags":
            pairs = ("string_agg(length(t.key) || ':' || t.key || length(t.value) || ':' || t.value, '' "
                     "ORDER BY t.key COLLATE \"C\")")
            parts.append(f"(SELECT count(*) || ':' || coalesce({pairs}, '') FROM jsonb_each_text({column}) AS t)")
        else:
            parts.append(f"length({column}) || ':' || {column}")
    return f"md5({' || '.join(parts)})::uuid"


def _digest(values):
    parts = []
    for name in LABEL_FIELDS:
        value = values[name]
        if name == "tags":
            pairs = sorted((str(k), str(v)) for k, v in (value or {}).items())
            parts.append(f"{len(pairs)}:")
            parts.extend(f"{len(k)}:{k}{len(v)}:{v}" for k, v in pairs)
        else:
            parts.append(f"{len(value)}:{value}")
    return uuid.UUID(hashlib.md5("".join(parts).encode(), usedforsecurity=False).hexdigest())


class OnSQLite(migrations.operations.base.Operation):
    """An operation whose state change holds everywhere but whose schema change PostgreSQL makes in the copy."""

    reduces_to_sql = False

    def __init__(self, operation):
        self.operation = operation

    def deconstruct(self):
        return self.__class__.__name__, [self.operation], {}

    def state_forwards(self, app_label, state):
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self):
        return f"{self.operation.describe()} (on PostgreSQL: in the ledger's copy)"


def _copy(cursor, columns, select, source, skip):
    """Replace the ledger by a partitioned copy with `columns` (catalog rows, as 0023 reads them) filled by
    `select` (column name: SQL) from `source`; constraints and indexes whose definition names one of `skip`
    are left behind, every other one made again under its own name."""
    new = f"{TABLE}__copy"
    skipped = re.compile(rf"\b({'|'.join(skip)})\b")
    constraints = [c for c in partitioning._constraints(cursor, TABLE) if not skipped.search(c[2])]
    indexes = [i for i in partitioning._indexes(cursor, TABLE) if not skipped.search(i[2])]
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
    (sequence,) = cursor.fetchone()
    cursor.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")  # kept: the ids go on
    definitions = [partitioning._column_sql(c, c["default"]) for c in partitioning._aligned(columns)]
    cursor.execute(f"CREATE TABLE {new} ({', '.join(definitions)}) PARTITION BY RANGE (created_at)")
    months = partitioning._months(cursor, TABLE)
    for month in months:
        cursor.execute(f"CREATE TABLE {new}_p{month:%Y%m} PARTITION OF {new} FOR VALUES FROM (%s) TO (%s)",
                       [month.isoformat(), partitioning._next_month(month).isoformat()])
    cursor.execute(f"CREATE TABLE {new}_pdefault PARTITION OF {new} DEFAULT")
    names = ", ".join(f'"{c["name"]}"' for c in columns)
    cursor.execute(f"INSERT INTO {new} ({names}) SELECT {', '.join(select[c['name']] for c in columns)} "
                   f"FROM {source}")
    cursor.execute(f"DROP TABLE {TABLE}")
    cursor.execute(f"ALTER TABLE {new} RENAME TO {TABLE}")
    for suffix in [f"p{month:%Y%m}" for month in months] + ["pdefault"]:
        cursor.execute(f"ALTER TABLE {new}_{suffix} RENAME TO {TABLE}_{suffix}")
    cursor.execute(f"ALTER SEQUENCE {sequence} OWNED BY {TABLE}.id")
    for name, _, definition, comment in constraints:
        cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')
        if comment:
            cursor.execute(f'COMMENT ON CONSTRAINT "{name}" ON {TABLE} IS %s', [comment])
    for name, _, definition, comment in indexes:
        cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
        if comment:
            cursor.execute(f'COMMENT ON INDEX "{name}" IS %s', [comment])
    cursor.execute(f"ANALYZE {TABLE}")


def _label_sets_insert(cursor):
    columns = ", ".join(LABEL_FIELDS)
    cursor.execute(
        f"INSERT INTO {LABEL_SETS} (account_id, digest, {columns}) "
        f"SELECT DISTINCT ON (account_id, digest) account_id, digest, {columns} "
        f"FROM (SELECT r.*, {_digest_sql('r')} AS digest FROM {TABLE} AS r) AS d "
        "ORDER BY account_id, digest")


def relabel(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        _relabel_sqlite(apps)
        return
    with connection.cursor() as cursor:
        # Pending deferred foreign key checks (rows written earlier in this transaction) block DROP TABLE.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _label_sets_insert(cursor)
        columns = [c for c in partitioning._columns(cursor, TABLE) if c["name"] not in LABEL_FIELDS]
        columns.append({"name": "labels_id", "type": "integer", "not_null": True, "default": None, "typlen": 4,
                        "typalign": "i", "identity": "", "attnum": 10_000, "collation": None})
        select = {c["name"]: f'r."{c["name"]}"' for c in columns} | {"labels_id": "l.id"}
        _copy(cursor, columns, select,
              f"{TABLE} AS r JOIN {LABEL_SETS} AS l "
              f"ON l.account_id = r.account_id AND l.digest = {_digest_sql('r')}", skip=LABEL_FIELDS)
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT billing_usagerecord_labels_id_fk_usagelabelset "
                       f"FOREIGN KEY (labels_id) REFERENCES {LABEL_SETS} (id) DEFERRABLE INITIALLY DEFERRED")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def unrelabel(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        _unrelabel_sqlite(apps)
        return
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        labels = [c for c in partitioning._columns(cursor, LABEL_SETS) if c["name"] in LABEL_FIELDS]
        columns = [c for c in partitioning._columns(cursor, TABLE) if c["name"] != "labels_id"]
        for n, column in enumerate(labels):
            # The routing columns had a database default (i16), so that rows written by SQL need not name them.
            default = "''::character varying" if column["name"] in ROUTING_LABELS else None
            columns.append(column | {"default": default, "attnum": 10_000 + n})
        select = {c["name"]: f'r."{c["name"]}"' for c in columns} | {name: f"l.{name}" for name in LABEL_FIELDS}
        _copy(cursor, columns, select, f"{TABLE} AS r JOIN {LABEL_SETS} AS l ON l.id = r.labels_id",
              skip=("labels_id",))
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _relabel_sqlite(apps):
    records = apps.get_model("billing", "UsageRecord")
    label_sets = apps.get_model("billing", "UsageLabelSet")
    found = {}
    last = 0
    while batch := list(records.objects.filter(pk__gt=last).order_by("pk")
                        .values("pk", "account_id", *LABEL_FIELDS)[:5000]):
        last = batch[-1]["pk"]
        for row in batch:
            key = (row["account_id"], _digest(row))
            if key not in found:
                found[key] = label_sets.objects.create(account_id=key[0], digest=key[1],
                                                       **{name: row[name] for name in LABEL_FIELDS}).pk
            records.objects.filter(pk=row["pk"]).update(labels_id=found[key])


def _unrelabel_sqlite(apps):
    records = apps.get_model("billing", "UsageRecord")
    for label_set in apps.get_model("billing", "UsageLabelSet").objects.iterator():
        records.objects.filter(labels_id=label_set.pk).update(
            **{name: getattr(label_set, name) for name in LABEL_FIELDS})


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0023_i20_partition_usage'),
        ('proxy', '0009_i16_route_cache'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageLabelSet',
            fields=[
                ('id', models.AutoField(primary_key=True, serialize=False)),
                ('digest', models.UUIDField()),
                ('feature', models.CharField(blank=True, max_length=200)),
                ('environment', models.CharField(blank=True, max_length=60)),
                ('tags', models.JSONField(blank=True, default=dict)),
                ('provider', models.CharField(max_length=63)),
                ('model', models.CharField(blank=True, max_length=200)),
                ('served_model', models.CharField(blank=True, max_length=200)),
                ('operation', models.CharField(blank=True, max_length=20)),
                ('usage_source', models.CharField(choices=[('reported', 'Reported'), ('estimated', 'Estimated')], default='reported', max_length=10)),
                ('route', models.CharField(blank=True, default='', max_length=200)),
                ('requested_model', models.CharField(blank=True, default='', max_length=200)),
                ('downgraded_from', models.CharField(blank=True, default='', max_length=200)),
            ],
        ),
        migrations.AddField(
            model_name='usagelabelset',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='usage_label_sets', to='billing.account'),
        ),
        migrations.AddConstraint(
            model_name='usagelabelset',
            constraint=models.UniqueConstraint(fields=('account', 'digest'), name='usage_labels_once'),
        ),
        OnSQLite(migrations.AddField(
            model_name='usagerecord',
            name='labels',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='records', to='billing.usagelabelset'),
        )),
        migrations.RunPython(relabel, unrelabel, elidable=False),
        OnSQLite(migrations.AlterField(
            model_name='usagerecord',
            name='labels',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='records', to='billing.usagelabelset'),
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='downgraded_from',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='environment',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='feature',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='model',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='operation',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='provider',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='requested_model',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='route',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='served_model',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='tags',
        )),
        OnSQLite(migrations.RemoveField(
            model_name='usagerecord',
            name='usage_source',
        )),
        migrations.AddIndex(
            model_name='usagerecord',
            index=models.Index(fields=['labels'], name='usage_labels'),
        ),
    ]
