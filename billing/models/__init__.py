"""billing's models, one module per noun family; Django and every caller import them from here."""

from .accounts import (
    HEX_COLOUR_VALIDATOR,
    MAX_CACHE_ENTRY_BYTES,
    MAX_CACHE_TOTAL_BYTES,
    MAX_CACHE_TTL_SECONDS,
    Account,
    Plan,
    Seat,
    validate_timezone,
)
from .audit import AuditEntry
from .budgets import Budget, PriceOverride
from .deadletters import UsageDeadLetter
from .invitations import Invitation
from .sso import SsoConfig, SsoDomain
from .tokens import ManagementToken
from .usage import (
    KEY_ID_HELP,
    LABEL_FIELDS,
    AllDimensions,
    RequestIdHash,
    RollupSums,
    SummaryDimensions,
    TenantDimensions,
    UsageDayRollup,
    UsageLabelSet,
    UsageRecord,
    UsageRollup,
    UsageSummaryDayRollup,
    UsageSummaryRollup,
    UsageTagRollup,
    UsageTenantDayRollup,
    UsageTenantRollup,
)

__all__ = [
    "LABEL_FIELDS", "RequestIdHash", "UsageLabelSet",
    "HEX_COLOUR_VALIDATOR", "KEY_ID_HELP", "MAX_CACHE_ENTRY_BYTES", "MAX_CACHE_TOTAL_BYTES", "MAX_CACHE_TTL_SECONDS",
    "Account", "AllDimensions", "AuditEntry", "Budget", "Invitation",
    "ManagementToken", "Plan", "PriceOverride", "RollupSums", "Seat", "SsoConfig", "SsoDomain", "SummaryDimensions",
    "TenantDimensions", "UsageDayRollup", "UsageDeadLetter", "UsageRecord", "UsageRollup",
    "UsageSummaryDayRollup", "UsageSummaryRollup", "UsageTagRollup", "UsageTenantDayRollup", "UsageTenantRollup",
    "validate_timezone",
]
