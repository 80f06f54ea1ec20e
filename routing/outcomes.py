"""What routing decides for one MO: exactly one of four outcomes.

* :class:`GlobalKeyword`: STOP, START, HELP (or another configured global kind), whatever
  campaign or session is open; the consent layer acts on it.
* :class:`ToCampaign`: a campaign takes the MO, reached by its keyword, by the subscriber's
  open session, or as the short code's default (:class:`Via`).
* :class:`Closed`: the MO names a campaign (or reaches a short code's default) that is not
  open now: before its start, after its end, or done.
* :class:`NoRoute`: nothing matched and the short code has no default.

Every outcome has a :attr:`label`: the short string stored with the MO (the ``route``
column, at most :data:`LABEL_MAX` characters).
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "LABEL_MAX",
    "Closed",
    "GlobalKeyword",
    "NoRoute",
    "Outcome",
    "ToCampaign",
    "Via",
]

#: The longest label an outcome gives (the width of the MO's ``route`` column).
LABEL_MAX = 64


def _label(prefix: str, name: str) -> str:
    # Campaign names are not length-limited in the sheets; the record only needs to be
    # recognisable, so the name is cut rather than the prefix.
    return prefix + name[: LABEL_MAX - len(prefix)]


class Via(enum.Enum):
    """How an MO reached the campaign that takes it."""

    #: The first word of the MO is one of the campaign's keywords.
    KEYWORD = "keyword"
    #: The subscriber has a session open with the campaign on this short code.
    SESSION = "session"
    #: The campaign is the short code's default.
    DEFAULT = "default"


@attrs.frozen
class GlobalKeyword:
    """The MO starts with a global keyword: STOP, START, HELP, or a configured extra kind.

    ``campaign`` narrows it to one campaign when the next word is one of that campaign's
    keywords on the same short code ("STOP VOTE"); it is None for a plain "STOP".
    """

    #: The keyword's kind: "stop", "start", "help" or an extra kind of the configuration.
    kind: str
    #: The global keyword matched, as configured ("STOP" for "stop!").
    word: str
    #: The rest of the text after the keyword.
    args: str
    #: The campaign the keyword is aimed at, if the next word is one of its keywords.
    campaign: str | None = None

    @property
    def label(self) -> str:
        """``global:KIND``."""
        return _label("global:", self.kind)


@attrs.frozen
class ToCampaign:
    """A campaign takes the MO."""

    campaign: str
    #: The matched keyword in the sheet's spelling; "" when reached by session or default.
    keyword: str
    #: The text after the keyword; by session or default, the whole text. Either way it is
    #: stripped and its runs of whitespace collapse to one space.
    args: str
    via: Via

    @property
    def label(self) -> str:
        """``campaign:NAME``, ``session:NAME`` or ``default:NAME``."""
        if self.via is Via.KEYWORD:
            return _label("campaign:", self.campaign)
        return _label(f"{self.via.value}:", self.campaign)


@attrs.frozen
class Closed:
    """The MO names a campaign that is not open now (not started, ended, or done).

    Also the outcome when the short code's default campaign is not open; ``keyword`` is then
    "" and ``args`` the whole text. The campaign's "closed" response is the usual answer.
    """

    campaign: str
    #: The matched keyword in the sheet's spelling; "" for a short code's default.
    keyword: str
    #: As :attr:`ToCampaign.args`: the text after the keyword, or the whole text.
    args: str

    @property
    def label(self) -> str:
        """``closed:NAME``."""
        return _label("closed:", self.campaign)


@attrs.frozen
class NoRoute:
    """Nothing matched: no global keyword, no campaign keyword, no session, no default."""

    short_code: str
    #: The first word of the MO as typed ("" when it has none).
    word: str

    @property
    def label(self) -> str:
        """``unknown``."""
        return "unknown"


#: The result of :func:`routing.router.route`: exactly one of these.
Outcome = GlobalKeyword | ToCampaign | Closed | NoRoute
