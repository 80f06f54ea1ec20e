"""Audit records: builders, serialisation and the hash chain."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from permissions.audit import (
    GATEWAY,
    GENESIS,
    AuditKind,
    AuditRecord,
    chain_digest,
    record_consent,
    record_decision,
    record_erasure,
    record_obligation_run,
    verify_chain,
)
from permissions.consent import ConsentPurpose, Evidence, OptOut, Scope
from permissions.obligations import ErasurePlan, ErasureReason
from permissions.policy import Deny, DenyReason, Permit, Request
from tests.permissions.strategies import deterministic

records = st.builds(
    AuditRecord,
    kind=st.sampled_from(AuditKind),
    at=st.floats(0, 4e9),
    who=st.text(max_size=20),
    subject=st.text(max_size=20),
    operation=st.text(max_size=10),
    category=st.text(max_size=10),
    purpose=st.text(max_size=20),
    decision=st.sampled_from(("", "permit", "deny")),
    reason=st.sampled_from(("", *DenyReason)),
    detail=st.text(max_size=40),
)


def chain(items: list[AuditRecord]) -> list[tuple[AuditRecord, str]]:
    out, previous = [], GENESIS
    for record in items:
        previous = chain_digest(previous, record)
        out.append((record, previous))
    return out


def test_record_decision() -> None:
    request = Request("Acme", "write", "declared", "response", "postcode")
    record = record_decision(Deny(DenyReason.NO_RULE, request, "module asked"), subject="s-1", at=5)
    assert record == AuditRecord(
        AuditKind.DECISION, 5.0, "Acme", "s-1", "write", "declared", "response", "deny", "no_rule", "attribute postcode; module asked"
    )
    bare = record_decision(Permit(), subject="", at=6, detail="keyword reply")
    assert (bare.who, bare.decision, bare.reason, bare.detail) == (GATEWAY, "permit", "", "keyword reply")


def test_record_consent() -> None:
    event = OptOut(Scope.of_short_code("4160"), Evidence(9.0, "4160", "STOP", 31), ConsentPurpose.ALL)
    record = record_consent(event, subject="s-2")
    assert (record.kind, record.at, record.who, record.subject) == (AuditKind.CONSENT, 9.0, GATEWAY, "s-2")
    assert (record.operation, record.purpose) == ("opt_out", "all")
    assert record.detail == "scope short code 4160; mo 31; short code 4160; keyword STOP"


def test_record_erasure_and_obligation_run() -> None:
    erasure = record_erasure(ErasurePlan(12, True, ErasureReason.IDLE), at=100)
    assert (erasure.kind, erasure.subject, erasure.category, erasure.reason) == (AuditKind.ERASURE, "12", "all", "idle")
    assert "hash" in erasure.detail
    local = record_erasure(ErasurePlan(12, False, "opt_out", "vote"), at=100, subject="ref")
    assert (local.subject, local.category, local.detail) == ("ref", "campaign:vote", "")
    run = record_obligation_run("erase_idle", at=100, count=1)
    assert (run.kind, run.operation, run.detail) == (AuditKind.OBLIGATION, "erase_idle", "1 subscriber")
    assert record_obligation_run("erase_idle", at=100, count=3, detail="cutoff 2024-03-01").detail == "3 subscribers; cutoff 2024-03-01"


@pytest.mark.parametrize("at", [float("nan"), float("inf"), "soon", True])
def test_records_need_a_finite_time(at: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        AuditRecord(AuditKind.CONFIG, at, GATEWAY)


@deterministic
@given(records)
def test_records_round_trip(record: AuditRecord) -> None:
    assert AuditRecord.from_dict(record.to_dict()) == record
    assert AuditRecord.from_dict(record.to_dict()).canonical() == record.canonical()


@deterministic
@given(st.lists(records, max_size=8))
def test_an_intact_chain_verifies(items: list[AuditRecord]) -> None:
    assert verify_chain(chain(items)) is None


@deterministic
@given(st.lists(records, min_size=1, max_size=8), st.data())
def test_a_tampered_entry_is_named(items: list[AuditRecord], data: st.DataObject) -> None:
    """Changing any field of any entry breaks the chain at that entry."""
    entries = chain(items)
    index = data.draw(st.integers(0, len(entries) - 1))
    record, digest = entries[index]
    field = data.draw(st.sampled_from(["who", "subject", "detail", "reason", "at"]))
    changed = attrs.evolve(record, **{field: record.at + 1 if field == "at" else getattr(record, field) + "x"})
    entries[index] = (changed, digest)
    assert verify_chain(entries) == index


@deterministic
@given(st.lists(records, min_size=2, max_size=8), st.data())
def test_a_removed_entry_is_found(items: list[AuditRecord], data: st.DataObject) -> None:
    entries = chain(items)
    index = data.draw(st.integers(0, len(entries) - 2))
    del entries[index]
    assert verify_chain(entries) == index


def test_digests_are_stable() -> None:
    """The digest covers the previous digest and the canonical JSON, nothing else."""
    record = AuditRecord(AuditKind.CONFIG, 1.5, GATEWAY, detail="reloaded policy.toml")
    assert record.canonical() == (
        b'{"at":1.5,"category":"","decision":"","detail":"reloaded policy.toml","kind":"config",'
        b'"operation":"","purpose":"","reason":"","subject":"","who":"gatewayd"}'
    )
    assert chain_digest(GENESIS, record) == chain_digest("0" * 64, AuditRecord.from_dict(record.to_dict()))
    assert chain_digest(GENESIS, record) != chain_digest("1" * 64, record)
