"""Frozen values of the MT outbox, as the units of :mod:`profile_store.mt` return them.

They carry plain Python values only (never a SQLAlchemy row), so they can cross from the
store's worker thread to trio tasks and be kept after the transaction ends.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

__all__ = ["MtRequest", "StoredMt", "StoredMtPart", "ClaimedMt", "MtProgress"]


@attrs.frozen(kw_only=True)
class MtRequest:
    """An MT as a sender asks for it, before it is stored.

    Attributes:
        msisdn: the destination, E.164 ("+447700900123").
        source_addr: the short code it comes from.
        text: the message text (split into parts when long).
        smsc: the SMSC to send through; None lets the sender pick one serving source_addr.
        data_coding: None for GSM 03.38 when the text allows, else UCS-2; or a fixed coding.
        priority: 0 for a reply to a subscriber's MO; larger values go later (10 = bulk).
        registered_delivery: ask the SMSC for a delivery receipt.
        in_reply_to: the ``mo_messages.id`` this MT answers.
        campaign: the campaign that sends it, for reports and for the consent check.
        kind: what the MT is to the privacy policy (``schema.MT_KINDS``); None means
            "response" for an MT with ``in_reply_to``, else "marketing".
        subscriber_id: the recipient's id when the caller already holds it with ``msisdn``
            as stored (a reply to an MO); None has the number normalised and looked up.
    """

    msisdn: str
    source_addr: str
    text: str
    smsc: str | None = None
    data_coding: int | None = None
    priority: int = 10
    registered_delivery: bool = True
    in_reply_to: int | None = None
    campaign: str | None = None
    kind: str | None = None
    subscriber_id: int | None = None

    @property
    def resolved_kind(self) -> str:
        """``kind``, or what it defaults to."""
        if self.kind is not None:
            return self.kind
        return "response" if self.in_reply_to is not None else "marketing"


@attrs.frozen(kw_only=True)
class StoredMt:
    """One row of ``mt_messages`` with its subscriber's number."""

    id: int
    subscriber_id: int
    msisdn: str
    source_addr: str
    smsc: str | None
    text: str
    data_coding: int | None
    concat_ref: int
    parts_total: int
    priority: int
    registered_delivery: bool
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    in_reply_to: int | None
    campaign: str | None
    claimed_by: str | None
    claim_expires_at: float | None
    created_at: float
    updated_at: float
    kind: str = "response"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "StoredMt":
        """Build from a mapping holding every ``mt_messages`` column plus ``msisdn``."""
        return cls(
            id=int(row["id"]),
            subscriber_id=int(row["subscriber_id"]),
            msisdn=str(row["msisdn"]),
            source_addr=str(row["source_addr"]),
            smsc=row["smsc"],
            text=str(row["text"]),
            data_coding=None if row["data_coding"] is None else int(row["data_coding"]),
            concat_ref=int(row["concat_ref"]),
            parts_total=int(row["parts_total"]),
            priority=int(row["priority"]),
            registered_delivery=bool(row["registered_delivery"]),
            status=str(row["status"]),
            attempts=int(row["attempts"]),
            next_attempt_at=float(row["next_attempt_at"]),
            last_error=row["last_error"],
            in_reply_to=row["in_reply_to"],
            campaign=row["campaign"],
            claimed_by=row["claimed_by"],
            kind=str(row.get("kind") or "response"),
            claim_expires_at=None if row["claim_expires_at"] is None else float(row["claim_expires_at"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
        )


@attrs.frozen(kw_only=True)
class StoredMtPart:
    """One row of ``mt_parts``: a submit_sm of an MT and what became of it."""

    id: int
    mt_id: int
    part_index: int
    status: str
    smsc: str | None
    smsc_message_id: str | None
    submit_status: int | None
    receipt_stat: str | None
    submitted_at: float | None
    done_at: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "StoredMtPart":
        """Build from a mapping holding every ``mt_parts`` column."""
        return cls(
            id=int(row["id"]),
            mt_id=int(row["mt_id"]),
            part_index=int(row["part_index"]),
            status=str(row["status"]),
            smsc=row["smsc"],
            smsc_message_id=row["smsc_message_id"],
            submit_status=row["submit_status"],
            receipt_stat=row["receipt_stat"],
            submitted_at=row["submitted_at"],
            done_at=row["done_at"],
        )


@attrs.frozen(kw_only=True)
class ClaimedMt:
    """An MT claimed by one node: everything needed to send what is still unsent.

    Attributes:
        pending_parts: the 1-based part indexes not yet accepted by an SMSC; parts accepted
            in an earlier attempt are left out, so they are not sent twice.
        claim_expires_at: until when the claim holds; after that another node may resume it.
    """

    id: int
    msisdn: str
    source_addr: str
    smsc: str | None
    text: str
    data_coding: int | None
    concat_ref: int
    parts_total: int
    registered_delivery: bool
    priority: int
    attempts: int
    pending_parts: tuple[int, ...]
    claim_expires_at: float
    #: What the MT is to the privacy policy, and the campaign that sends it (checked against
    #: the subscriber's consent when claimed).
    kind: str = "response"
    campaign: str | None = None
    subscriber_id: int = 0

    @property
    def destination_addr(self) -> str:
        """The msisdn as submit_sm carries it with TON 1 (international): no leading '+'."""
        return self.msisdn.removeprefix("+")

    @classmethod
    def from_row(cls, row: Mapping[str, Any], pending_parts: tuple[int, ...]) -> "ClaimedMt":
        """Build from a mapping holding every ``mt_messages`` column plus ``msisdn``."""
        return cls(
            id=int(row["id"]),
            msisdn=str(row["msisdn"]),
            source_addr=str(row["source_addr"]),
            smsc=row["smsc"],
            text=str(row["text"]),
            data_coding=None if row["data_coding"] is None else int(row["data_coding"]),
            concat_ref=int(row["concat_ref"]),
            parts_total=int(row["parts_total"]),
            registered_delivery=bool(row["registered_delivery"]),
            priority=int(row["priority"]),
            attempts=int(row["attempts"]),
            pending_parts=pending_parts,
            claim_expires_at=float(row["claim_expires_at"]),
            kind=str(row.get("kind") or "response"),
            campaign=row.get("campaign"),
            subscriber_id=int(row.get("subscriber_id") or 0),
        )


@attrs.frozen(kw_only=True)
class MtProgress:
    """Where an MT stands after a unit changed it.

    Attributes:
        status: the MT's status afterwards (``submitted`` once every part is accepted).
        parts_accepted: parts accepted by an SMSC or further along (delivered, ...).
        receipts_applied: held receipts applied to the part just accepted (part_accepted only).
    """

    mt_id: int
    status: str
    attempts: int
    parts_total: int
    parts_accepted: int
    next_attempt_at: float
    last_error: str | None
    receipts_applied: int = 0

    @property
    def done(self) -> bool:
        """True when the sender has nothing more to do for this MT now."""
        return self.status not in ("queued", "sending")
