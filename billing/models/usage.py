"""Usage records (one per proxied call) and the rollups every view reads."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Value

from .accounts import Account


class RequestIdHash(models.Func):
    """A request id as 64 bits (PostgreSQL's hashtextextended): the ledger's uniqueness is kept on this and the
    call's time, an index entry a third the size of one on the id's text. SQLite indexes the text itself."""

    function = "hashtextextended"
    template = "%(function)s(%(expressions)s, 0)"
    output_field = models.BigIntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return compiler.compile(self.source_expressions[0])


class UsageLabelSet(models.Model):
    """The labels of calls, stored once per distinct combination per account and referenced by each record
    (UsageRecord.labels): an account's calls repeat a few hundred combinations of feature, model, environment,
    tags and the rest, so a record carries a 4-byte reference instead of about 80 bytes of text (docs/scaling.md
    "Bytes per record"). Rows are never changed, and stay when retention drops the records that used them.

    The tenant is not a label here but the record's own column: an account's tenants are its long tail
    (hundreds to thousands), they would multiply its label sets a hundredfold, and a tenant's calls are found
    by their own index (usage_account_tenant). Nor is denied_scope, the call's outcome: the planner estimates
    "a small tenant's denials" from the record's own statistics.

    `digest` names the combination (billing.usage.labels.labels_digest): unique per account, a 16-byte key
    however long the labels are."""

    class Source(models.TextChoices):
        REPORTED = "reported"
        ESTIMATED = "estimated"

    id = models.AutoField(primary_key=True)  # 4 bytes in every record that references it
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_label_sets", db_index=False)
    digest = models.UUIDField()
    feature = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=60, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=63)
    model = models.CharField(max_length=200, blank=True)
    served_model = models.CharField(max_length=200, blank=True)
    operation = models.CharField(max_length=20, blank=True)
    usage_source = models.CharField(max_length=10, choices=Source.choices, default=Source.REPORTED)
    # Routing (docs/CONTRACT.md "Routes and cache"): the route the model named, the model the client asked
    # for when another served it, the model a budget's downgrade replaced.
    route = models.CharField(max_length=200, blank=True, default="")
    requested_model = models.CharField(max_length=200, blank=True, default="")
    downgraded_from = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        # Also how a filter finds an account's label sets: a few thousand rows, read through the account.
        constraints = [models.UniqueConstraint(fields=["account", "digest"], name="usage_labels_once")]

    def __str__(self) -> str:
        return f"{self.feature or '-'} / {self.environment or '-'} / {self.model}"


# A record's labels, read through its label set: every record query carries them as if they were columns.
LABEL_FIELDS = ("feature", "environment", "tags", "provider", "model", "served_model", "operation", "usage_source",
                "route", "requested_model", "downgraded_from")


class LabelledRecords(models.Manager):
    """Records with their labels (LABEL_FIELDS) annotated from the label set, so that callers filter, group,
    order and read `feature`, `tags` or `model` as they would columns. Writers set `labels`."""

    def get_queryset(self) -> models.QuerySet:
        labelled: models.QuerySet = super().get_queryset().annotate(
            **{name: F(f"labels__{name}") for name in LABEL_FIELDS})
        return labelled


class UsageRecord(models.Model):
    """One proxied call (CONTRACT §4). Never the prompt, never the response."""

    Source = UsageLabelSet.Source

    # Unique with the call's time (usage_request_once): the ledger stores each event once.
    request_id = models.CharField(max_length=40)
    # Indexed by usage_account_time below, which also serves the foreign key's own lookups.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_records", db_index=False)
    # Not indexed: the call log finds a key's calls from the time its rollup cells give (billing.calls.selectors).
    key = models.ForeignKey(
        "proxy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records",
        db_index=False,
    )
    # Feature, environment, tags, provider, model and the other LABEL_FIELDS. DO_NOTHING: the database's
    # foreign key itself refuses to drop a set that records still use (its index, usage_labels, makes that
    # check one lookup), without Django reading an account's millions of records when the account (and with
    # it both) is deleted.
    labels = models.ForeignKey(UsageLabelSet, on_delete=models.DO_NOTHING, related_name="records", db_index=False)
    tenant = models.CharField(max_length=200, blank=True)
    # An agent run (X-Tokonomics-Session), its name and its git context as `tokonomics run` sends them.
    # A database default too: bulk loaders that write rows by SQL (tools/scale.py, COPY) need not name them.
    session = models.CharField(max_length=100, blank=True, default="", db_default="")
    session_name = models.CharField(max_length=200, blank=True, default="", db_default="")
    session_git = models.CharField(max_length=300, blank=True, default="", db_default="")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=18, decimal_places=9, null=True, blank=True, help_text="Empty when the model's price is unknown."
    )
    provider_cost_usd = models.DecimalField(
        max_digits=18, decimal_places=9, null=True, blank=True,
        help_text="What the provider said the call cost (OpenRouter, Perplexity), beside ours; never charged.",
    )
    latency_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField()
    # The call's outcome, like its status (not a label): the budget or limit that refused it, else empty.
    denied_scope = models.CharField(max_length=40, blank=True)
    reserved_usd = models.DecimalField(
        max_digits=18, decimal_places=9, null=True, blank=True,
        help_text="A call a budget denied: the estimate it asked to reserve (docs/budgets.md).",
    )
    streamed = models.BooleanField(default=False)
    # Served from the account's response cache: no upstream call, cost 0 and no tokens (the provider processed
    # none); cache_saved_usd is what the answer would have cost at the call's own prices.
    cache_hit = models.BooleanField(default=False, db_default=False)
    cache_saved_usd = models.DecimalField(
        max_digits=18, decimal_places=9, null=True, blank=True,
        help_text="A cache hit: what the call would have cost upstream; empty otherwise (or when unpriced).",
    )
    enforced = models.BooleanField(
        default=True, help_text="False when Redis was unreachable and the call went through."
    )
    # Every upstream attempt of a routed call ({target, outcome, ms}), and what serving it so saved against
    # the model asked for (docs/CONTRACT.md "Routes and cache").
    attempts = models.JSONField(default=list, blank=True, db_default=[])
    routing_saved_usd = models.DecimalField(max_digits=18, decimal_places=9, null=True, blank=True)
    guardrail_hits = models.JSONField(
        # db_default: rows written by SQL alone (bulk seeding, an older proxy's ledger) get an empty list too.
        default=list, db_default=Value([], output_field=models.JSONField()), blank=True,
        help_text='Guardrail rules that matched: [{"rule": id, "action": …, "count": n}]; never the text.',
    )
    created_at = models.DateTimeField(db_index=False)

    objects = LabelledRecords()
    # The labels as LabelledRecords reads them with every record (declared for type checkers; not columns).
    feature: str
    environment: str
    tags: dict[str, str]
    provider: str
    model: str
    served_model: str
    operation: str
    usage_source: str
    route: str
    requested_model: str
    downgraded_from: str

    class Meta:
        # Few indexes, each a query's (docs/scaling.md "Bytes per record"): the call log, exports, sessions and
        # counter rebuilds read an account's calls by time. A tenant's calls are found by (account, tenant)
        # alone: a few hundred tenants, some with a call an hour, whose calls walking the time index would take
        # millions of rows to find; without the time in it the index keeps each tenant's rows as one posting
        # list (B-tree deduplication), about 9 B a record instead of 50-85. PostgreSQL sorts a small tenant's
        # rows and walks the time index for a big one. The call log's other filters walk the time index between
        # the first and last hours their rollup cells give (billing.calls.selectors). usage_labels serves the
        # label sets' foreign key (a few hundred values an account: a few bytes a record, deduplicated).
        constraints = [
            models.UniqueConstraint(RequestIdHash("request_id"), F("created_at"), name="usage_request_once"),
        ]
        indexes = [
            models.Index(fields=["account", "created_at"], name="usage_account_time"),
            models.Index(fields=["account", "tenant"], name="usage_account_tenant"),
            models.Index(fields=["labels"], name="usage_labels"),
            # Sessions are read from raw records only (no rollup keeps them): the sessions list, a session's
            # calls, and a session budget's counters rebuilt. Partial: most calls name no session.
            models.Index(fields=["account", "session", "created_at"], name="usage_account_session_time",
                         condition=~models.Q(session="")),
        ]

    def __str__(self) -> str:
        return self.request_id


class RollupSums(models.Model):
    """What every rollup adds up for the calls of its cell (an hour or a UTC day × some dimensions)."""

    requests = models.PositiveBigIntegerField(default=0)
    streamed_requests = models.PositiveBigIntegerField(default=0)
    estimated_requests = models.PositiveBigIntegerField(default=0)
    unknown_cost_requests = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0)
    latency_ms_total = models.PositiveBigIntegerField(default=0)
    # Routing (i16): what routes and budget downgrades saved, and how many calls a budget downgraded.
    routing_saved_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0, db_default=0)
    downgraded_requests = models.PositiveBigIntegerField(default=0, db_default=0)
    cache_hits = models.PositiveBigIntegerField(default=0, db_default=0)
    cache_saved_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0, db_default=0)

    class Meta:
        abstract = True


KEY_ID_HELP = "0 when the call had no key (kept after a key is deleted)."


class AllDimensions(RollupSums):
    """The cell of a rollup of every dimension (UsageRollup and its day rows)."""

    feature = models.CharField(max_length=200, blank=True)
    tenant = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=60, blank=True)
    provider = models.CharField(max_length=63)
    model = models.CharField(max_length=200, blank=True)
    key_id = models.BigIntegerField(default=0, help_text=KEY_ID_HELP)
    status_code = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True


class SummaryDimensions(RollupSums):
    """The cell of a rollup of every dimension but the tenant (UsageSummaryRollup and its day rows)."""

    feature = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=60, blank=True)
    provider = models.CharField(max_length=63)
    model = models.CharField(max_length=200, blank=True)
    key_id = models.BigIntegerField(default=0, help_text=KEY_ID_HELP)
    status_code = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True


class TenantDimensions(RollupSums):
    """The cell of a rollup of the tenant alone (UsageTenantRollup and its day rows)."""

    tenant = models.CharField(max_length=200, blank=True)
    status_code = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True


class UsageRollup(AllDimensions):
    """Usage summed per hour and dimension, maintained as records are ingested. Dashboards read
    these instead of scanning raw records, and they outlive the records' retention.

    Every record is also added to a day row (UsageDayRollup) and to the same two spans of two narrower
    rollups: every dimension but the tenant (UsageSummaryRollup) and the tenant alone (UsageTenantRollup).
    A few hundred tenants multiply the cells here twentyfold; a view reads the narrowest rollup that keeps
    its dimensions, and the whole days of a range from day rows (billing.usage.rollups.rollup_rows)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_rollups")
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "hour", "feature", "tenant", "environment", "provider", "model", "key_id",
                        "status_code"],
                name="usagerollup_unique_cell",
            ),
        ]
        indexes = [models.Index(fields=["account", "hour"], name="usagerollup_account_hour"),
                   models.Index(fields=["account", "tenant", "hour"], name="usagerollup_tenant_hour")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.provider}/{self.model}: {self.requests} calls"


class UsageDayRollup(AllDimensions):
    """UsageRollup's cells per UTC day."""

    # No index of its own: the unique cell's index leads with the account.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_day_rollups", db_index=False)
    day = models.DateTimeField(help_text="Midnight UTC.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "feature", "tenant", "environment", "provider", "model", "key_id",
                        "status_code"],
                name="usagedayrollup_unique_cell",
            ),
        ]
        indexes = [models.Index(fields=["account", "tenant", "day"], name="usagedayrollup_tenant_day")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day:%Y-%m-%d} {self.provider}/{self.model}: {self.requests} calls"


class UsageSummaryRollup(SummaryDimensions):
    """Usage per hour × every dimension but the tenant: about a hundred cells an hour where the tenants
    make thousands, for totals, charts and the other breakdowns."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_summary_rollups",
                                db_index=False)
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "hour", "feature", "environment", "provider", "model", "key_id", "status_code"],
                name="usagesummaryrollup_unique_cell",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.feature}: {self.requests} calls"


class UsageSummaryDayRollup(SummaryDimensions):
    """UsageSummaryRollup's cells per UTC day."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_summary_day_rollups",
                                db_index=False)
    day = models.DateTimeField(help_text="Midnight UTC.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "feature", "environment", "provider", "model", "key_id", "status_code"],
                name="usagesummarydayrollup_unique_cell",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day:%Y-%m-%d} {self.feature}: {self.requests} calls"


class UsageTenantRollup(TenantDimensions):
    """Usage per hour × tenant × status, for the tenant breakdown."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_tenant_rollups",
                                db_index=False)
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "hour", "tenant", "status_code"],
                                    name="usagetenantrollup_unique_cell"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.tenant}: {self.requests} calls"


class UsageTenantDayRollup(TenantDimensions):
    """UsageTenantRollup's cells per UTC day."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_tenant_day_rollups",
                                db_index=False)
    day = models.DateTimeField(help_text="Midnight UTC.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "tenant", "status_code"],
                                    name="usagetenantdayrollup_unique_cell"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day:%Y-%m-%d} {self.tenant}: {self.requests} calls"


class UsageTagRollup(models.Model):
    """Spend per hour and tag (`X-Tokonomics-Tags: intent=summarize`), for the tag breakdown."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_tag_rollups")
    hour = models.DateTimeField()
    tag = models.CharField(max_length=60)
    value = models.CharField(max_length=200)
    requests = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0)
    # input + output; a database default, so writers of the older shape (tools/scale.py) still insert
    tokens = models.PositiveBigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "hour", "tag", "value"], name="usagetagrollup_unique_cell"),
        ]
        indexes = [models.Index(fields=["account", "hour"], name="usagetagrollup_account_hour")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.tag}={self.value}: {self.requests} calls"
