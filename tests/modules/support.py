"""Plain-value builders for module tests, and a conversation that carries state between MOs."""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from modules.api import (
    CampaignInfo,
    EndSession,
    Message,
    ModuleContext,
    ModuleResult,
    OpenSession,
    Record,
    Reply,
    SetState,
    SubscriberView,
)

__all__ = ["Conversation", "actions_of", "campaign", "context", "mo", "records", "replies"]


def campaign(keywords: tuple[str, ...] = ("KW",), response: str = "", **responses: str) -> CampaignInfo:
    """A campaign sheet's public part."""
    return CampaignInfo(
        name="show", owner="tv", short_code="54321", keywords=keywords, response=response, responses=responses
    )


def context(
    settings: Any,
    *,
    state: Mapping[str, Any] | None = None,
    in_session: bool = False,
    now: float = 1000.0,
    info: CampaignInfo | None = None,
) -> ModuleContext:
    """A module context for one MO."""
    view = SubscriberView(ref="sub-1", state=state or {}, in_session=in_session)
    return ModuleContext(campaign=info or campaign(), settings=settings, subscriber=view, now=now)


def mo(args: str = "", *, keyword: str = "KW", via_session: bool = False, received_at: float = 1000.0) -> Message:
    """An MO as routed: the keyword and its arguments, or the whole text through a session."""
    if via_session:
        keyword = ""
    text = f"{keyword} {args}".strip()
    return Message(1, "54321", text, keyword, args, received_at, via_session)


def actions_of(result: ModuleResult, kind: type) -> list[Any]:
    """The actions of one type, in order."""
    return [a for a in result.actions if isinstance(a, kind)]


def replies(result: ModuleResult) -> list[str]:
    """The rendered reply texts."""
    return [r.text for r in actions_of(result, Reply)]


def records(result: ModuleResult) -> list[Record]:
    """The records."""
    return actions_of(result, Record)


@attrs.define
class Conversation:
    """One subscriber talking to one module: state and session carried over as the engine would."""

    module: Any
    settings: Any
    info: CampaignInfo = attrs.field(factory=campaign)
    state: Mapping[str, Any] = attrs.field(factory=dict)
    in_session: bool = False
    session_until: float = 0.0
    now: float = 1000.0
    results: list[ModuleResult] = attrs.field(factory=list)

    def send(self, args: str = "", *, keyword: str | None = None, at: float | None = None) -> ModuleResult:
        """Send an MO at ``at`` (default: now); without ``keyword`` it goes through the open session."""
        if at is not None:
            self.now = at
        if self.in_session and self.now > self.session_until:
            self.in_session = False
        via_session = keyword is None
        assert not via_session or self.in_session, "no open session to route the MO through"
        message = mo(args, keyword=keyword or "", via_session=via_session, received_at=self.now)
        ctx = context(self.settings, state=self.state, in_session=self.in_session, now=self.now, info=self.info)
        result = self.module.handle(ctx, message)
        assert isinstance(result, ModuleResult)
        assert replies(result), "every MO gets a reply"
        for action in result.actions:
            if isinstance(action, SetState):
                self.state = action.state
            elif isinstance(action, OpenSession):
                self.in_session, self.session_until = True, self.now + action.timeout
            elif isinstance(action, EndSession):
                self.in_session = False
        self.results.append(result)
        return result

    def say(self, args: str = "", *, keyword: str | None = None, at: float | None = None) -> str:
        """Send an MO and return its single reply's text."""
        texts = replies(self.send(args, keyword=keyword, at=at))
        assert len(texts) == 1, texts
        return texts[0]

    def all_records(self) -> list[Record]:
        """Every record of the conversation so far."""
        return [r for result in self.results for r in records(result)]
