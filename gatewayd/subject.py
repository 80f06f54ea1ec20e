"""Subject rights and the audit trail from the command line.

* ``gatewayd subject export NUMBER [--out FILE]``: everything held about one subscriber, as
  JSON (access and portability). The export is audited.
* ``gatewayd subject erase NUMBER``: erase everything held about one subscriber, keeping only
  the opt-outs they still need (under a keyed hash of the number). Audited.
* ``gatewayd audit verify``: check the hash chain of the audit log; name the first entry that
  was changed, removed or inserted.
* ``gatewayd disclose CAMPAIGN --to THIRD_PARTY``: hand a campaign's results per pseudonymous
  subscriber to a third party, if the policy lets the campaign's owner disclose
  participation to it. Refused or not, the decision is audited.

They open the store directly (the daemon may be running: on SQLite the writes wait for its
writer, on PostgreSQL they are ordinary transactions). The number is given in any form the
store accepts ("+306912345678", "00306912345678"; a national number with ``[store]
default_region``); it is never printed back.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from gatewayd.config import ConfigError, GatewayConfig
from gatewayd.privacy import PrivacyKeys, has_standing_opt_out, load_key
from permissions import AuditKind, AuditRecord, ConsentState, ErasurePlan, ErasureReason, keyed_number_hash, record_erasure
from profile_store import privacy as records
from profile_store.schema import subscribers
from profile_store.subscribers import InvalidNumber, normalise_msisdn

__all__ = ["with_store", "audit_verify_command", "disclose_command", "subject_erase_command", "subject_export_command"]


def with_store(config: GatewayConfig, work: Callable[[sa.Connection], int], *, write: bool) -> int:
    """Run ``work`` in one transaction on the configured store; the exit status."""
    from profile_store.db import StoreError, make_engine
    from profile_store.migrate import check_schema

    try:
        check_schema(config.store.url, config.path)
        engine = make_engine(config.store.url)
        try:
            with engine.connect() as conn:
                if write:
                    conn = conn.execution_options(writer=True)
                with conn.begin():
                    return work(conn)
        finally:
            engine.dispose()
    except StoreError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 1
    except sa.exc.SQLAlchemyError as exc:
        print(f"gatewayd: the database failed: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1


def _subject(config: GatewayConfig, number: str) -> tuple[str, str] | None:
    """The number in E.164 and its keyed hash, or None after printing why not."""
    try:
        e164 = normalise_msisdn(number, default_region=config.store.default_region)
    except InvalidNumber:
        print("gatewayd: that is not a phone number", file=sys.stderr)
        return None
    try:
        secret = load_key(config.key_path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None
    return e164, keyed_number_hash(PrivacyKeys.derive(secret).number, e164)


def _write_json(data: Any, out: Path | None) -> None:
    """Personal data as JSON on stdout, or in ``out`` created 0600."""
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    if out is None:
        print(text)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"written to {out}", file=sys.stderr)


def _find(conn: sa.Connection, e164: str) -> int | None:
    return conn.execute(sa.select(subscribers.c.id).where(subscribers.c.msisdn == e164)).scalar()


def subject_export_command(config: GatewayConfig, number: str, out: Path | None) -> int:
    """Write everything held about ``number`` as JSON to ``out`` (stdout when None); the exit status."""
    found = _subject(config, number)
    if found is None:
        return 1
    e164, number_hash = found

    def work(conn: sa.Connection) -> int:
        now = time.time()
        sid = _find(conn, e164)
        if sid is None:
            ledger = records.load_consent(conn, [number_hash]).get(number_hash)
            if ledger is None:
                print("gatewayd: nothing is held about that number", file=sys.stderr)
                return 1
            data: dict[str, Any] = {"subscriber": None, "consent": [_event(e) for e in ledger.events], "exported_at": now}
            subject = f"hash:{number_hash[:16]}"
        else:
            data = records.export_subscriber(conn, sid, number_hash, now)
            subject = records.subject_ref(sid)
        _write_json(data, out)
        records.append_audit(
            conn, [AuditRecord(kind=AuditKind.EXPORT, at=now, who="gatewayd", subject=subject, operation="export", detail="subject access request")]
        )
        return 0

    return with_store(config, work, write=True)


def _event(event: Any) -> dict[str, Any]:
    from permissions import event_to_dict

    return event_to_dict(event)


def subject_erase_command(config: GatewayConfig, number: str) -> int:
    """Erase everything held about ``number``, keeping the opt-outs it needs; the exit status."""
    found = _subject(config, number)
    if found is None:
        return 1
    e164, number_hash = found

    def work(conn: sa.Connection) -> int:
        now = time.time()
        sid = _find(conn, e164)
        if sid is None:
            print("gatewayd: no subscriber with that number (opt-outs kept under its hash stay)", file=sys.stderr)
            return 1
        ledger = records.load_consent(conn, [number_hash]).get(number_hash, ConsentState.empty())
        keep = has_standing_opt_out(ledger)
        counts = records.erase_subscriber(conn, sid, number_hash, keep_opt_outs=keep)
        plan = ErasurePlan(sid, keep, ErasureReason.SUBJECT_REQUEST)
        records.append_audit(conn, [record_erasure(plan, at=now, subject=records.subject_ref(sid))])
        removed = sum(counts.rows.values())
        kept = f"; kept {counts.kept_opt_outs} opt-out(s) under the number's keyed hash" if counts.kept_opt_outs else ""
        print(f"erased subscriber {sid}: {removed} rows{kept}")
        return 0

    return with_store(config, work, write=True)


def audit_verify_command(config: GatewayConfig) -> int:
    """Check the audit log's hash chain; exit 0 when intact, 1 naming the first broken entry."""

    def work(conn: sa.Connection) -> int:
        check = records.verify_audit(conn)
        if check.broken_id is None:
            print(f"audit log intact: {check.entries} entries")
            return 0
        broken = check.broken
        what = f" ({broken.kind} at {broken.at:.3f}, {broken.operation or '-'})" if broken is not None else ""
        print(f"audit log broken at entry {check.broken_id}{what}: changed, removed or inserted", file=sys.stderr)
        return 1

    return with_store(config, work, write=False)


def disclose_command(config: GatewayConfig, campaign: str, third_party: str, out: Path | None) -> int:
    """Write campaign ``campaign``'s results per pseudonymous subscriber for ``third_party``,
    when the policy permits; the exit status (1 when refused)."""
    from gatewayd.engine import pseudonym
    from gatewayd.privacy import read_policy
    from permissions import Category, Deny, Operation, Purpose
    from profile_store.schema import campaign_records, campaigns

    try:
        policy = read_policy(config)
        keys = PrivacyKeys.derive(load_key(config.key_path))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1

    def work(conn: sa.Connection) -> int:
        now = time.time()
        row = conn.execute(sa.select(campaigns.c.id, campaigns.c.owner).where(campaigns.c.name == campaign)).first()
        if row is None:
            print(f"gatewayd: no campaign called {campaign!r} has run on this database", file=sys.stderr)
            return 1
        try:
            purpose = Purpose.disclosure(third_party)
        except ValueError as exc:
            print(f"gatewayd: {exc}", file=sys.stderr)
            return 1
        decision = policy.may(row.owner, Operation.DISCLOSE, Category.PARTICIPATION, purpose)
        subject = f"campaign:{campaign}"
        if isinstance(decision, Deny):
            records.append_audit(conn, [decision.audit(subject=subject, at=now, detail="disclosure refused")])
            print(f"gatewayd: the privacy policy does not let {row.owner!r} disclose participation to {third_party!r} ({decision.reason})", file=sys.stderr)
            return 1
        results = conn.execute(
            sa.select(campaign_records.c.subscriber_id, campaign_records.c.kind, campaign_records.c.key, campaign_records.c.value, campaign_records.c.recorded_at)
            .where(campaign_records.c.campaign_id == row.id, campaign_records.c.withdrawn == sa.false())
            .order_by(campaign_records.c.id)
        )
        data = [
            {
                "subscriber": pseudonym(keys.pseudonym, campaign, sid) if sid is not None else None,
                "kind": kind,
                "key": key,
                "value": value,
                "recorded_at": at,
            }
            for sid, kind, key, value, at in results
        ]
        _write_json({"campaign": campaign, "recipient": third_party, "results": data, "disclosed_at": now}, out)
        records.append_audit(conn, [decision.audit(subject=subject, at=now, detail=f"{len(data)} results disclosed")])
        return 0

    return with_store(config, work, write=True)
