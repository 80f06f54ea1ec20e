"""Pure routing of mobile-originated messages by short code and keyword.

:class:`RoutingTable` is built once per configuration from the campaign sheets' rules,
rejecting ambiguous ones as :class:`Conflict` values; :func:`route` then decides, for each
MO, one :data:`Outcome`: a global keyword, a campaign (by keyword, session or default), a
closed campaign, or no route. :func:`fold` and :func:`split_first_word` are the tolerant
tokenising both sides share. Nothing here does I/O or reads a clock.
"""

from routing.normalise import fold, split_first_word
from routing.outcomes import LABEL_MAX, Closed, GlobalKeyword, NoRoute, Outcome, ToCampaign, Via
from routing.router import route
from routing.table import (
    CampaignRule,
    Conflict,
    ConflictReason,
    GlobalKeywords,
    RoutingTable,
    ShortCodeRule,
)

__all__ = [
    "LABEL_MAX",
    "CampaignRule",
    "Closed",
    "Conflict",
    "ConflictReason",
    "GlobalKeyword",
    "GlobalKeywords",
    "NoRoute",
    "Outcome",
    "RoutingTable",
    "ShortCodeRule",
    "ToCampaign",
    "Via",
    "fold",
    "route",
    "split_first_word",
]
