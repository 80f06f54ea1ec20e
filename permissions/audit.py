"""Audit records: one value per thing the privacy layer decided or did.

Every policy decision, consent change, obligation run, erasure, export and configuration
reload can be described by one :class:`AuditRecord`. The record is a plain value of strings
and one time, so that the store can keep it as one row (or one JSON line) and the audit log
can chain the records by hash: :func:`chain_digest` gives the digest of a record following
another, and :func:`verify_chain` finds the first entry whose digest does not match.

A record never holds a telephone number: ``subject`` is a pseudonymous reference (the
subscriber's id or a keyed hash), and the evidence of a consent event is its MO id, short
code and keyword.

This module builds records; it does not decide anything. The builders read the decision,
event or plan they are given by attribute, so it imports nothing else from the package.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import attrs

if TYPE_CHECKING:
    from permissions.consent import ConsentEvent
    from permissions.obligations import ErasurePlan
    from permissions.policy import Decision

__all__ = [
    "GATEWAY",
    "GENESIS",
    "AuditKind",
    "AuditRecord",
    "chain_digest",
    "record_consent",
    "record_decision",
    "record_erasure",
    "record_obligation_run",
    "verify_chain",
]

#: ``who`` for what the gateway does by itself (obligations, keyword handling, reloads).
GATEWAY = "gatewayd"

#: The digest that precedes the first record of a chain.
GENESIS = "0" * 64


class AuditKind(enum.StrEnum):
    """What a record is about."""

    #: A policy decision (a refusal, or a permit worth recording such as a disclosure).
    DECISION = "decision"
    #: A consent event appended to the ledger (opt-in, request, confirmation, opt-out).
    CONSENT = "consent"
    #: One run of an obligation (idle erasure sweep, under-age refusal, erase on opt-out).
    OBLIGATION = "obligation"
    #: One subscriber's data erased (all of it, or one campaign's local profile).
    ERASURE = "erasure"
    #: One subscriber's data exported (subject access / portability).
    EXPORT = "export"
    #: The configuration (policy, sheets) reloaded.
    CONFIG = "config"


def _time(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"an audit record's time must be a finite number of seconds, got {value!r}")
    return float(value)


def _text(value: Any) -> str:
    # Enums (StrEnum) and other values become their plain text.
    return "" if value is None else str(value)


@attrs.frozen
class AuditRecord:
    """One entry of the audit log.

    All fields but ``kind`` and ``at`` are free strings so that one shape serves every kind;
    the builders fill them from enums (``operation="read"``, ``reason="no_rule"``).
    """

    kind: AuditKind = attrs.field(converter=AuditKind)
    #: When it happened (UTC seconds).
    at: float = attrs.field(converter=_time)
    #: The data user that asked, or :data:`GATEWAY` for the gateway's own actions.
    who: str = attrs.field(converter=_text)
    #: The pseudonymous subject reference ("" when no subscriber is concerned).
    subject: str = attrs.field(default="", converter=_text)
    #: "read", "write", "disclose", "send", "opt_out", "erase", ...
    operation: str = attrs.field(default="", converter=_text)
    #: The data category ("contact", "declared", ...) or the erased part ("all", a campaign).
    category: str = attrs.field(default="", converter=_text)
    #: The purpose ("response", "marketing", "analytics", "disclosure:NAME", ...).
    purpose: str = attrs.field(default="", converter=_text)
    #: "permit", "deny", or "" when nothing was decided.
    decision: str = attrs.field(default="", converter=_text)
    #: The reason enum's value for a refusal, or another short machine-readable word.
    reason: str = attrs.field(default="", converter=_text)
    #: Anything else a reader needs: the scope, the evidence, a count.
    detail: str = attrs.field(default="", converter=_text)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-compatible dict (the inverse of :meth:`from_dict`)."""
        return {field.name: getattr(self, field.name) for field in attrs.fields(AuditRecord)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """A record from :meth:`to_dict`'s output; unknown keys raise ``TypeError``."""
        return cls(**data)

    def canonical(self) -> bytes:
        """The bytes the chain digest covers: sorted-key compact JSON, UTF-8."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_digest(previous: str, record: AuditRecord) -> str:
    """The digest of ``record`` following the entry whose digest is ``previous``.

    SHA-256 over the previous digest, a newline and :meth:`AuditRecord.canonical`, as hex.
    The first record of a log follows :data:`GENESIS`.
    """
    return hashlib.sha256(previous.encode("ascii") + b"\n" + record.canonical()).hexdigest()


def verify_chain(entries: Iterable[tuple[AuditRecord, str]], start: str = GENESIS) -> int | None:
    """Check a log of ``(record, stored digest)`` pairs in order.

    Returns:
        The index of the first entry whose stored digest is not the digest of its record
        after the previous stored digest (a changed, inserted or removed entry), or None
        when the whole chain is intact.
    """
    previous = start
    for index, (record, digest) in enumerate(entries):
        if chain_digest(previous, record) != digest:
            return index
        previous = digest
    return None


# --- builders ----------------------------------------------------------------------------------


def record_decision(decision: Decision, *, subject: str, at: float, detail: str = "") -> AuditRecord:
    """The record of a policy decision (:class:`permissions.policy.Permit` or ``Deny``).

    The question asked (data user, operation, category, purpose) comes from the decision's
    ``request``; a decision made without one records only its outcome.
    """
    request = decision.request
    extra = getattr(decision, "detail", "")
    if request is not None and request.attribute:
        extra = f"attribute {request.attribute}" + (f"; {extra}" if extra else "")
    return AuditRecord(
        kind=AuditKind.DECISION,
        at=at,
        who=request.user if request is not None else GATEWAY,
        subject=subject,
        operation=request.operation if request is not None else "",
        category=request.category if request is not None else "",
        purpose=request.purpose if request is not None else "",
        decision="permit" if decision.permitted else "deny",
        reason=getattr(decision, "reason", None),
        detail="; ".join(part for part in (extra, detail) if part),
    )


def record_consent(event: ConsentEvent, *, subject: str, who: str = GATEWAY) -> AuditRecord:
    """The record of one consent event appended to the ledger, at the event's time."""
    evidence = event.evidence
    parts = [f"scope {event.scope}"]
    if evidence.mo_id is not None:
        parts.append(f"mo {evidence.mo_id}")
    if evidence.short_code:
        parts.append(f"short code {evidence.short_code}")
    if evidence.keyword:
        parts.append(f"keyword {evidence.keyword}")
    if evidence.note:
        parts.append(evidence.note)
    return AuditRecord(
        kind=AuditKind.CONSENT,
        at=evidence.at,
        who=who,
        subject=subject,
        operation=event.label,
        purpose=getattr(event, "purpose", ""),
        detail="; ".join(parts),
    )


def record_erasure(plan: ErasurePlan, *, at: float, subject: str | None = None) -> AuditRecord:
    """The record of one executed :class:`permissions.obligations.ErasurePlan`.

    ``subject`` defaults to the plan's subscriber id (an internal id, not the number).
    """
    return AuditRecord(
        kind=AuditKind.ERASURE,
        at=at,
        who=GATEWAY,
        subject=str(plan.subscriber_id) if subject is None else subject,
        operation="erase",
        category="all" if plan.campaign is None else f"campaign:{plan.campaign}",
        reason=plan.reason,
        detail="kept keyed hash of the number" if plan.keep_hash else "",
    )


def record_obligation_run(obligation: str, *, at: float, count: int, detail: str = "") -> AuditRecord:
    """The record of one run of an obligation that acted on ``count`` subscribers."""
    summary = f"{count} subscriber{'s' if count != 1 else ''}"
    return AuditRecord(
        kind=AuditKind.OBLIGATION,
        at=at,
        who=GATEWAY,
        operation=obligation,
        detail="; ".join(part for part in (summary, detail) if part),
    )
