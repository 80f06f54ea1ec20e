"""Route one MO: the pure decision of who handles a subscriber's message.

:func:`route` looks at the short code, the text, the time and the subscriber's open
session, and returns exactly one :data:`routing.outcomes.Outcome`. The precedence:

1. **Global keywords**, always, even with a session open: a subscriber can always stop.
2. **A campaign keyword** on this short code: :class:`ToCampaign` when the campaign is
   open now, else :class:`Closed`.
3. **The open session**, when its campaign is in the table on this short code and open:
   the whole text goes to it.
4. **The short code's default campaign**: :class:`ToCampaign` when open, else
   :class:`Closed`.
5. :class:`NoRoute`.

When several campaigns share a keyword on one short code (their windows never overlap
while running, the table sees to that), the one open at ``now`` takes the MO. When none
is, the closed answer comes from the one nearest in time: a done campaign whose window
still contains ``now``, else the one that ended most recently, else the next to start.

``route`` is total: any string as text (empty, emoji, lone surrogates), any short code,
any ``now`` including NaN, and any session name give one outcome and never raise.
"""

from __future__ import annotations

from routing.normalise import fold, split_first_word
from routing.outcomes import Closed, GlobalKeyword, NoRoute, Outcome, ToCampaign, Via
from routing.table import RoutingTable

__all__ = ["route"]


def route(
    table: RoutingTable,
    short_code: str,
    text: str,
    now: float,
    session: str | None = None,
) -> Outcome:
    """Decide which campaign, if any, handles an MO.

    Args:
        table: the routing table of the current configuration.
        short_code: the short code the MO was sent to (its destination address).
        text: the MO's whole text.
        now: the time of the decision (UTC epoch seconds).
        session: the campaign with a sticky session open for this subscriber on this
            short code, None for none. The caller has already checked that it has not
            expired; routing only checks that the campaign is still in the table, on this
            short code, and open.

    Returns:
        Exactly one of :class:`GlobalKeyword`, :class:`ToCampaign`, :class:`Closed` and
        :class:`NoRoute`.
    """
    word, args = split_first_word(text)
    keywords = table._keywords
    if word:
        folded = fold(word)
        glob = table.global_keywords._by_fold.get(folded)
        if glob is not None:
            return GlobalKeyword(glob[0], glob[1], args, _aimed_at(table, short_code, args, now))
        slot = keywords.get((short_code, folded))
        if slot is not None:
            (rule, spelling), is_open = slot.pick(now)
            if is_open:
                return ToCampaign(rule.campaign, spelling, args, Via.KEYWORD)
            return Closed(rule.campaign, spelling, args)
    if session is not None:
        rule_or_none = table._rules.get(session)
        if (
            rule_or_none is not None
            and rule_or_none.short_code == short_code
            and rule_or_none.is_open(now)
        ):
            return ToCampaign(session, "", " ".join(text.split()), Via.SESSION)
    default = table._defaults.get(short_code)
    if default is not None:
        whole = " ".join(text.split())
        if table._rules[default].is_open(now):
            return ToCampaign(default, "", whole, Via.DEFAULT)
        return Closed(default, "", whole)
    return NoRoute(short_code, word)


def _aimed_at(table: RoutingTable, short_code: str, args: str, now: float) -> str | None:
    """The campaign whose keyword on this short code is the first word of ``args``."""
    if not args:
        return None
    target, _rest = split_first_word(args)
    if not target:
        return None
    slot = table._keywords.get((short_code, fold(target)))
    if slot is None:
        return None
    (rule, _spelling), _is_open = slot.pick(now)
    return rule.campaign
