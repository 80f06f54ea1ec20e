"""Outbound campaigns at work: schedule, materialise, finish and follow up the sends.

Every ``interval`` seconds :class:`Outbound` looks at the multicast campaigns in force:

1. each ``send_at`` that has come gets its send row (once: a send is unique per campaign and
   name, so two nodes or a restart never create it twice);
2. each scheduled send whose time has come is checked against the policy (its owner must be
   allowed to read what the segment uses, for marketing; a refusal cancels the send, logged
   and audited) and materialised into the outbox, in units of :data:`UNIT` subscribers so
   that MOs keep flowing meanwhile; MTs go in at the campaign's priority (10 or more), so
   replies to MOs (priority 0) always overtake them;
3. a running send with nothing left to send is done;
4. a campaign with ``send_again`` gets its follow-ups: after ``after_hours``, a send to the
   previous send's recipients who did not reply (or whose MT was not delivered), at most
   ``times`` times.

What each MT then waits for (the recipient's allowed hours, the caps, a STOP) is decided
when the outbox claims it (:meth:`gatewayd.privacy.Privacy.screen`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import attrs
import sqlalchemy as sa
import structlog
import trio

from gatewayd.smpp.text import ConcatMethod, split_text
from permissions import MARKETING, AuditKind, AuditRecord
from profile_store import privacy as records
from profile_store import sends as store
from profile_store.db import Store, StoreUnavailable
from profile_store.schema import sends, subscribers
from profile_store.segments import MaterialiseResult, Segment, SendTarget, materialise_send, tally_send

__all__ = ["Outbound", "UNIT", "segment_of"]

log = structlog.get_logger("gatewayd.outbound")

#: Subscriber ids materialised per store unit: small enough that an MO waiting for the
#: writer meanwhile waits a few milliseconds. A unit cannot be cut short: at 5,000 one took
#: 45-85 ms under the multicast end-to-end test; at 1,000 about 12-16 ms, for a whole
#: materialisation about a third slower (each unit costs about 3 ms of its own).
UNIT = 1_000


def segment_of(settings: Any) -> Segment:
    """The :class:`~profile_store.segments.Segment` of a multicast campaign's settings."""
    given = settings.segment
    return Segment(
        opted_in=given.opted_in,
        alerts_topic=given.alerts_topic,
        took_part_in=given.took_part_in,
        not_in=given.not_in,
        last_seen_within_days=given.last_seen_within_days,
        attributes=dict(given.attributes),
        attribute_prefixes=dict(given.attribute_prefixes),
    )


def _parts(text: str) -> int:
    return len(split_text(text, reference=0, method=ConcatMethod.UDH8, data_coding=None))


@attrs.define
class Outbound:
    """Runs the sends of the multicast campaigns (see the module docstring)."""

    store: Store
    #: The campaigns in force (:class:`gatewayd.campaigns.Campaigns`).
    campaigns: Any
    #: Wakes the outbox after MTs were queued.
    wake: Callable[[], None] = lambda: None
    interval: float = 5.0
    clock: Callable[[], float] = time.time

    async def run(self) -> None:
        """Tick every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("outbound_tick_failed", error=str(exc))
            await trio.sleep(self.interval)

    def _multicasts(self) -> dict[str, Any]:
        current = self.campaigns.current
        if current is None:
            return {}
        return {name: c for name, c in current.campaigns.items() if c.sheet.module == "multicast"}

    async def tick(self) -> None:
        """One look at the schedules, the due sends, the finished ones and the follow-ups."""
        now = self.clock()
        multicasts = self._multicasts()
        engine = self.campaigns.engine
        if engine is None:
            return
        for name, loaded in multicasts.items():
            cid = engine.campaign_ids.get(name)
            entries = [
                (moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds"), moment.timestamp(), loaded.sheet.settings.text, None)
                for moment in loaded.sheet.settings.send_at
                if moment.timestamp() <= now
            ]
            if cid is not None and entries:
                await self.store.write(store.ensure_sends, cid, entries, now)
        for send in await self.store.read(store.due_sends, now):
            loaded = multicasts.get(send.campaign)
            if loaded is None:
                continue
            await self._start(send, loaded, now)
        for send in await self.store.write(store.finish_sends, now):
            log.info("send_done", campaign=send.campaign, send=send.name, targeted=send.targeted)
        await self._follow_ups(multicasts, now)

    async def _start(self, send: store.SendRow, loaded: Any, now: float) -> None:
        sheet = loaded.sheet
        privacy = self.campaigns.privacy
        segment = segment_of(sheet.settings)
        problems = privacy.policy.check_segment_criteria(
            sheet.owner, segment.categories(), attributes_used=segment.attributes_used(), purpose=MARKETING
        ) if privacy is not None else ["no privacy policy loaded"]
        if problems:
            reasons = "; ".join(getattr(p, "message", str(p)) for p in problems)
            await self.store.write(_refuse, send.id, sheet.owner, reasons, now)
            log.error("send_refused", campaign=sheet.name, send=send.name, problems=reasons)
            return
        target = SendTarget(
            send_id=send.id,
            campaign=sheet.name,
            owner=sheet.owner,
            short_code=sheet.short_code,
            text=send.text,
            parts_total=_parts(send.text),
            priority=sheet.settings.priority,
            now=now,
        )
        started = trio.current_time()
        if send.parent_id is None:
            chosen, among = segment, None
        else:
            chosen = Segment(opted_in=segment.opted_in)
            among = store.recipients_for_send_again(send.parent_id, sheet.short_code, sheet.settings.send_again.to)
        low, high = await self.store.read(_id_bounds)
        for first in range(low, high + 1, UNIT):
            if not await self.store.write(_materialise_unit, chosen, target, among, first, first + UNIT):
                log.info("send_not_started", campaign=sheet.name, send=send.name, reason="paused or cancelled meanwhile")
                return
        seconds = trio.current_time() - started
        result = await self.store.write(_finish_materialising, target.send_id, now, seconds)
        log.info(
            "send_started",
            campaign=sheet.name,
            send=send.name,
            targeted=result.targeted,
            queued=result.queued,
            suppressed=dict(result.suppressed),
            seconds=round(seconds, 3),
        )
        self.wake()

    async def _follow_ups(self, multicasts: dict[str, Any], now: float) -> None:
        for name, loaded in multicasts.items():
            again = loaded.sheet.settings.send_again
            if again is None:
                continue
            sends = await self.store.read(store.sends_of, name)
            by_parent = {s.parent_id: s for s in sends if s.parent_id is not None}
            for root in (s for s in sends if s.parent_id is None):
                previous, depth = root, 0
                while previous.id in by_parent:
                    previous, depth = by_parent[previous.id], depth + 1
                if depth >= again.times or previous.status not in ("running", "done") or previous.started_at is None:
                    continue
                if now < previous.started_at + again.after_hours * 3600:
                    continue
                entry = (f"{root.name} again {depth + 1}", now, again.text or root.text, previous.id)
                if await self.store.write(store.ensure_sends, root.campaign_id, [entry], now):
                    log.info("send_again_scheduled", campaign=name, send=entry[0])


def _id_bounds(conn: sa.Connection) -> tuple[int, int]:
    """The lowest and highest subscriber ids (0, -1 when there are none)."""
    # Two scalar subqueries, not min() and max() in one SELECT: SQLite answers each of them
    # from one end of the primary key, but both in one SELECT with a scan of the whole table.
    low, high = conn.execute(
        sa.select(
            sa.select(sa.func.min(subscribers.c.id)).scalar_subquery(),
            sa.select(sa.func.max(subscribers.c.id)).scalar_subquery(),
        )
    ).one()
    return (int(low), int(high)) if low is not None else (0, -1)


def _materialise_unit(
    conn: sa.Connection, segment: Segment, target: SendTarget, among: Any, first: int, end: int
) -> bool:
    """Materialise the subscribers with ids in [first, end), if the send is still to start;
    False when it was paused or cancelled meanwhile (nothing written).

    ``among`` (a SELECT of one column of subscriber ids, or None) is bounded to the same range,
    so that each unit reads only its part of it (a send-again's parent send: an index range of
    (send_id, subscriber_id), not the whole parent send again in every unit).
    """
    status = conn.execute(sa.select(sends.c.status).where(sends.c.id == target.send_id)).scalar()
    if status != "scheduled":
        return False
    ids = sa.select(subscribers.c.id).where(subscribers.c.id >= first, subscribers.c.id < end)
    if among is not None:
        among_id = among.selected_columns[0]
        ids = ids.where(subscribers.c.id.in_(among.where(among_id >= first, among_id < end)))
    materialise_send(conn, segment, target, ids, tally=False)
    return True


def _finish_materialising(conn: sa.Connection, send_id: int, now: float, seconds: float) -> MaterialiseResult:
    """Count the send's recipients and mark it running."""
    result = tally_send(conn, send_id)
    store.start_send(conn, send_id, now, seconds)
    return result


def _refuse(conn: sa.Connection, send_id: int, owner: str, reasons: str, now: float) -> None:
    """Cancel a send the policy does not allow, and audit it."""
    conn.execute(sa.update(sends).where(sends.c.id == send_id).values(status="cancelled", finished_at=now, updated_at=now))
    records.append_audit(
        conn,
        [
            AuditRecord(
                kind=AuditKind.DECISION,
                at=now,
                who=owner,
                subject=f"send:{send_id}",
                operation="read",
                purpose="marketing",
                decision="deny",
                reason="no_rule",
                detail=f"segment refused: {reasons}"[:1000],
            )
        ],
    )
