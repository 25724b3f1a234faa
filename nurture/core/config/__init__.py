"""The campaign config contract (docs/campaign-format.md): the pydantic `schema` and the
`loading` that validates a directory.

`load_config(dir)` returns a `Config` or raises `ConfigError` listing every problem as
`path:line: key.path: message`, so a marketer can fix them all in one pass.
"""

from nurture.core.config.loading import (
    Config,
    ConfigError,
    Problem,
    SourceFile,
    load_config,
    parse_file,
)
from nurture.core.config.schema import (
    NURTURE_STAGES,
    SLUG,
    Audience,
    BuyingStage,
    Campaign,
    Condition,
    EngagementRule,
    FitRule,
    Lifecycle,
    Limits,
    MqlRouting,
    RecycleRouting,
    RejectAction,
    Routing,
    Scoring,
    Sender,
    SendWindow,
    Step,
    Track,
    Variant,
)

__all__ = [
    "Audience",
    "BuyingStage",
    "Campaign",
    "Condition",
    "Config",
    "ConfigError",
    "EngagementRule",
    "FitRule",
    "Lifecycle",
    "Limits",
    "MqlRouting",
    "NURTURE_STAGES",
    "Problem",
    "RecycleRouting",
    "RejectAction",
    "Routing",
    "SLUG",
    "Scoring",
    "SendWindow",
    "Sender",
    "SourceFile",
    "Step",
    "Track",
    "Variant",
    "load_config",
    "parse_file",
]
