"""Frozen values returned by the store's units, and the status enums its tables hold.

Units never hand out SQLAlchemy rows: each value here has a ``from_row`` classmethod that
copies what callers need out of a result row (anything with ``__getitem__`` by column name,
such as ``Row._mapping`` or a plain dict). The file is organised by aggregate: subscribers,
mobile originated (MO), mobile terminated (MT), delivery receipts (DLR).

Status enums are :class:`enum.StrEnum` so a member compares equal to the lower-case string
stored in its column (see the NOTES of :mod:`profile_store.schema`).
"""

from __future__ import annotations

import enum
from typing import Any, Mapping

import attrs

__all__ = [
    "MoPartStatus",
    "MoStatus",
    "StoredMo",
    "MoStored",
    "MtStatus",
    "MtPartStatus",
    "ReceiptRecorded",
]

Row = Mapping[str, Any]


# --- subscribers ----------------------------------------------------------------------------
# get_or_create_subscriber returns the id alone; no value is needed yet.


# --- mobile originated ----------------------------------------------------------------------


class MoPartStatus(enum.StrEnum):
    """``mo_parts.status``: where one received part stands."""

    #: Waiting for the other parts of its concatenated message.
    PENDING = "pending"
    #: Part of a message in ``mo_messages`` (a single-part MO is assembled at once).
    ASSEMBLED = "assembled"
    #: Its message never completed; it went into an incomplete MO at expiry.
    EXPIRED = "expired"


class MoStatus(enum.StrEnum):
    """``mo_messages.status``: how far the gateway got with an MO."""

    #: Stored, not yet routed (what a restart picks up again).
    STORED = "stored"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"


@attrs.frozen
class StoredMo:
    """A complete MO (or an incomplete one, after reassembly expired), as campaigns see it."""

    id: int
    smsc: str
    subscriber_id: int
    #: The subscriber's number in E.164.
    msisdn: str
    short_code: str
    #: The text of every part, in order; gaps (``complete`` false) are marked with "…".
    text: str
    data_coding: int
    #: Parts in the message (complete), or parts that arrived (incomplete).
    parts: int
    complete: bool
    #: When the first part was received.
    received_at: float
    status: str
    route: str | None

    @classmethod
    def from_row(cls, row: Row) -> "StoredMo":
        """Copy an ``mo_messages`` row joined with ``subscribers.msisdn``."""
        return cls(
            id=int(row["id"]),
            smsc=row["smsc"],
            subscriber_id=int(row["subscriber_id"]),
            msisdn=row["msisdn"],
            short_code=row["short_code"],
            text=row["text"],
            data_coding=int(row["data_coding"]),
            parts=int(row["parts"]),
            complete=bool(row["complete"]),
            received_at=float(row["received_at"]),
            status=row["status"],
            route=row["route"],
        )


@attrs.frozen
class MoStored:
    """What storing one received MO part did."""

    #: The part was a redelivery of one already stored: nothing was written.
    duplicate: bool
    #: The ``mo_parts`` row: the new one, or the earlier one this part duplicates.
    part_id: int
    #: The MO this part completed (a single-part MO completes at once), else None.
    mo: StoredMo | None

    @classmethod
    def from_row(cls, row: Row, *, duplicate: bool, mo: StoredMo | None = None) -> "MoStored":
        """Build from the ``mo_parts`` row concerned."""
        return cls(duplicate=duplicate, part_id=int(row["id"]), mo=mo)


# --- mobile terminated ----------------------------------------------------------------------


class MtStatus(enum.StrEnum):
    """``mt_messages.status`` (see the lifecycle in :mod:`profile_store.schema`)."""

    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class MtPartStatus(enum.StrEnum):
    """``mt_parts.status``: one submit_sm, as the SMSC and then its receipt reported it."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    EXPIRED = "expired"


# --- delivery receipts ----------------------------------------------------------------------


@attrs.frozen
class ReceiptRecorded:
    """What recording one delivery receipt did."""

    #: The ``dlr_events`` row written.
    event_id: int
    #: The receipt found its MT part; False: held until the submit_sm_resp id is stored.
    matched: bool
    mt_part_id: int | None
    mt_id: int | None
    #: The part's status after the receipt (None when unmatched).
    part_status: str | None
    #: The MT's status after the receipt (None when unmatched).
    mt_status: str | None
    #: Matched by recipient and text, not by id (a submission whose id was never stored).
    by_content: bool = False

    @classmethod
    def from_row(
        cls,
        row: Row,
        *,
        mt_id: int | None = None,
        part_status: str | None = None,
        mt_status: str | None = None,
        by_content: bool = False,
    ) -> "ReceiptRecorded":
        """Build from the ``dlr_events`` row written, with what it did to its part and MT."""
        part_id = row["mt_part_id"]
        return cls(
            event_id=int(row["id"]),
            matched=bool(row["matched"]),
            mt_part_id=None if part_id is None else int(part_id),
            mt_id=mt_id,
            part_status=part_status,
            mt_status=mt_status,
            by_content=by_content,
        )
