"""The privacy policy at work in the daemon: keys, the policy in force, the consent check at
submit time, the scheduled obligations and the MYDATA summary.

The decisions are :mod:`permissions`'; the records are :mod:`profile_store.privacy`'. This
module holds what a running gateway needs around them:

* the **privacy key** (:func:`load_key`), a secret of 32 random bytes kept in a file of its
  own (``[privacy] key_file``, default ``state_dir/privacy.key``, created 0600). The keyed
  hashes of numbers (the consent ledger's key, what survives an erasure) and the
  per-campaign pseudonyms are derived from it, so without it neither can be tested against
  guessed numbers. Nodes sharing a database must share the key file.
* :class:`Privacy`, an immutable snapshot of the policy and the campaigns it judges, swapped
  on reload like the campaigns themselves.
* :meth:`Privacy.screen`, the outbox's last look at every claimed MT: an MT the subscriber
  opted out of since it was queued (or a marketing MT without a standing opt-in) is
  cancelled, not sent.
* :func:`run_idle_erasure`, the obligation that erases subscribers idle for the policy's
  ``erase_after_months``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import attrs
import sqlalchemy as sa
import structlog

from gatewayd.config import ConfigError, ConfigProblem, GatewayConfig
from permissions import (
    AuditKind,
    AuditRecord,
    CampaignRef,
    ConsentState,
    Deny,
    ErasurePlan,
    ErasureReason,
    MtKind,
    OptOut,
    Policy,
    Scope,
    idle_cutoff,
    is_under_age,
    keyed_number_hash,
    may_send,
    record_decision,
    record_erasure,
    record_obligation_run,
)
from gatewayd.quiet_hours import Caps, QuietHours, next_allowed, zone_for
from permissions.policy_file import load_policy
from profile_store import privacy as records
from profile_store.mt_values import ClaimedMt
from profile_store.schema import MT_STATUSES, mt_messages

__all__ = [
    "IDLE_UNIT",
    "KEY_BYTES",
    "DEFAULT_DELIVERY",
    "DeliveryRules",
    "Privacy",
    "PrivacyKeys",
    "audit_config",
    "audit_run",
    "has_standing_opt_out",
    "load_key",
    "read_policy",
    "run_idle_erasure",
    "run_obligations",
]

log = structlog.get_logger("gatewayd.privacy")

#: The size of the privacy key.
KEY_BYTES = 32


def load_key(path: Path) -> bytes:
    """The privacy key in ``path``, created (32 random bytes as hex, mode 0600) when missing.

    Raises:
        ConfigError: the file cannot be read or created, or does not hold a key.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), "", "", f"cannot create the privacy key: {exc.strerror or exc}")]) from None
    else:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
        log.info("privacy_key_created", path=str(path))
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), "", "", f"cannot read the privacy key: {exc.strerror or exc}")]) from None
    except (UnicodeDecodeError, ValueError):
        raise ConfigError([ConfigProblem(str(path), "", "", "expected a privacy key: 64 hexadecimal digits")]) from None
    if len(key) < 16:
        raise ConfigError([ConfigProblem(str(path), "", "", f"expected a privacy key of at least 16 bytes, got {len(key)}")])
    return key


@attrs.frozen
class PrivacyKeys:
    """The keys derived from the privacy key, one per use."""

    #: For the keyed hashes of numbers (the consent ledger, erasure).
    number: bytes = attrs.field(repr=False)
    #: For the per-campaign pseudonyms modules and reports see.
    pseudonym: bytes = attrs.field(repr=False)

    @classmethod
    def derive(cls, secret: bytes) -> PrivacyKeys:
        """Derive the keys from the privacy key (HMAC-SHA256 with a label per use)."""
        return cls(
            number=hmac.new(secret, b"gatewayd number hash", hashlib.sha256).digest(),
            pseudonym=hmac.new(secret, b"gatewayd pseudonym", hashlib.sha256).digest(),
        )


def read_policy(config: GatewayConfig) -> Policy:
    """The policy file of ``config``; a missing file is a policy that allows nothing.

    Raises:
        ConfigError: the file exists but is not a valid policy.
    """
    path = config.policy_path
    if not path.exists():
        log.error("policy_missing", path=str(path), consequence="every use of personal data is refused")
        return Policy(source=str(path))
    return load_policy(path)


def has_standing_opt_out(state: ConsentState) -> bool:
    """Tell whether some opt-out of the ledger still stands (no later START lifted it)."""
    return any(isinstance(state.deciding_opt_out(event.scope), OptOut) for event in state.events if isinstance(event, OptOut))


_HASH_CACHE_MAX = 100_000


@attrs.frozen
class DeliveryRules:
    """When and how often a campaign's marketing MTs may reach a subscriber."""

    #: The allowed hours in the recipient's local time.
    window: QuietHours = attrs.field(factory=lambda: QuietHours.parse("09:00-21:00"))
    #: An IANA zone for every recipient instead of the number's own.
    zone: str | None = None
    #: The zone of numbers that map to several (or none).
    default_zone: str = "UTC"
    caps: Caps = attrs.field(factory=Caps)


#: The rules of marketing MTs whose campaign sets none (alerts, MTs of removed sheets).
DEFAULT_DELIVERY = DeliveryRules()
_SENT = ("sending", "submitted", "delivered", "undelivered", "expired")
#: The other statuses an MT can have. The caps query says ``status NOT IN _NOT_SENT``: the
#: same rows as ``status IN _SENT`` (the CHECK constraint allows only MT_STATUSES), but
#: SQLite then picks the subscriber_id index instead of walking the (status, priority,
#: next_attempt_at) index over every sent MT.
_NOT_SENT = tuple(status for status in MT_STATUSES if status not in _SENT)


@attrs.define
class Privacy:
    """The policy in force and the campaigns it judges (swapped whole on reload)."""

    policy: Policy
    keys: PrivacyKeys
    #: Campaign name -> its identity, for every campaign with a row in the store.
    refs: Mapping[str, CampaignRef] = attrs.field(factory=dict)
    #: Campaign name -> its delivery rules (quiet hours, caps); others get DEFAULT_DELIVERY.
    delivery: Mapping[str, DeliveryRules] = attrs.field(factory=dict)
    _hashes: dict[str, str] = attrs.field(factory=dict, repr=False)

    def number_hash(self, e164: str) -> str:
        """The keyed hash of a number (the consent ledger's key)."""
        found = self._hashes.get(e164)
        if found is None:
            if len(self._hashes) >= _HASH_CACHE_MAX:
                self._hashes.clear()
            found = self._hashes[e164] = keyed_number_hash(self.keys.number, e164)
        return found

    # --- at submit time --------------------------------------------------------------------

    def screen(self, conn: sa.Connection, mts: list[ClaimedMt], now: float) -> dict[int, str | float]:
        """The claimed MTs not to send now: the reason to cancel each, or the time to defer it to.

        Keyword replies and the under-age refusal always go. Every other MT is checked
        against the ledger as it is now, so a STOP suppresses the MTs queued before it; a
        marketing MT of a campaign also needs the policy's permit and a standing opt-in, waits
        for its campaign's allowed hours in the recipient's local time, and is cancelled when
        the recipient reached the campaign's daily or weekly cap. An MT without a campaign is
        held back only by an opt-out of its short code.
        """
        checked = [mt for mt in mts if mt.kind not in (MtKind.KEYWORD, MtKind.REFUSAL)]
        if not checked:
            return {}
        hashes = {mt.id: self.number_hash(mt.msisdn) for mt in checked}
        ledgers = records.load_consent(conn, set(hashes.values()))
        marketing = [mt.subscriber_id for mt in checked if mt.kind == MtKind.MARKETING and mt.campaign in self.refs]
        attributes = records.load_attributes(conn, marketing) if marketing else {}
        empty = ConsentState.empty()
        cancelled: dict[int, str | float] = {}
        audit: list[AuditRecord] = []
        marketing_ok: list[tuple[ClaimedMt, DeliveryRules]] = []
        for mt in checked:
            consent = ledgers.get(hashes[mt.id], empty)
            ref = self.refs.get(mt.campaign) if mt.campaign else None
            if ref is None:
                scope = Scope.of_short_code(mt.source_addr)
                if consent.opted_out_of(scope):
                    blocker = consent.deciding_opt_out(scope)
                    cancelled[mt.id] = f"suppressed: opted out ({blocker.scope if blocker else scope})"
                continue
            kind = MtKind.MARKETING if mt.kind == MtKind.MARKETING else MtKind.RESPONSE
            minimum = self.policy.obligations.minimum_age
            under = is_under_age(attributes.get(mt.subscriber_id, {}), minimum, now=now) if minimum and kind is MtKind.MARKETING else None
            decision = may_send(kind, ref, consent, self.policy.may_message(ref.owner, kind), under)
            if isinstance(decision, Deny):
                detail = decision.detail or decision.reason.value
                cancelled[mt.id] = f"suppressed: {detail}"
                audit.append(
                    record_decision(decision, subject=records.subject_ref(mt.subscriber_id), at=now, detail=f"mt {mt.id} of campaign {ref.name!r} not sent")
                )
            elif kind is MtKind.MARKETING:
                marketing_ok.append((mt, self.delivery.get(ref.name, DEFAULT_DELIVERY)))
        if audit:
            records.append_audit(conn, audit)
        for mt_id, reason in cancelled.items():
            log.info("mt_suppressed", mt_id=mt_id, reason=reason)
        cancelled.update(_pace(conn, marketing_ok, now))
        return cancelled

    # --- subject access by SMS ---------------------------------------------------------------

    def summary(self, conn: sa.Connection, subscriber_id: int, e164: str, short_code: str, now: float) -> str:
        """The MYDATA reply: what is held about the sender, in one or two SMS."""
        profile = records.customer_profile(conn, subscriber_id, now)
        number_hash = self.number_hash(e164)
        consent = records.load_consent(conn, [number_hash]).get(number_hash, ConsentState.empty())
        held = records.local_profile_campaigns(conn, subscriber_id)
        parts = [f"{short_code} holds your number"]
        if profile is not None:
            first = dt.datetime.fromtimestamp(profile.first_seen_at, dt.timezone.utc).date().isoformat()
            last = dt.datetime.fromtimestamp(profile.last_seen_at, dt.timezone.utc).date().isoformat()
            parts.append(f"{profile.mos} messages from you ({first} to {last})")
            if profile.attributes:
                parts.append("what you told us: " + ", ".join(sorted(profile.attributes)))
        names = sorted(set(held.values()))
        parts.append("data in campaigns: " + (", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") if names else "none"))
        stops = sorted({str(event.scope) for event in consent.events if isinstance(event, OptOut) and consent.opted_out_of(event.scope)})
        if stops:
            parts.append("opted out of: " + ", ".join(stops))
        return "; ".join(parts) + ". Text STOP to opt out."


def _pace(conn: sa.Connection, mts: list[tuple[ClaimedMt, DeliveryRules]], now: float) -> dict[int, str | float]:
    """Quiet hours (defer) and caps (cancel) for marketing MTs that may otherwise go."""
    held: dict[int, str | float] = {}
    capped = [mt.subscriber_id for mt, rules in mts if rules.caps.per_day or rules.caps.per_week]
    sent: dict[int, list[float]] = {}
    if capped:
        rows = conn.execute(
            sa.select(mt_messages.c.subscriber_id, mt_messages.c.updated_at).where(
                mt_messages.c.subscriber_id.in_(sorted(set(capped))),
                mt_messages.c.kind == "marketing",
                mt_messages.c.status.not_in(_NOT_SENT),
                mt_messages.c.updated_at > now - 7 * 86400,
                mt_messages.c.id.not_in([mt.id for mt, _ in mts]),
            )
        )
        for sid, at in rows:
            sent.setdefault(int(sid), []).append(float(at))
    for mt, rules in mts:
        if rules.window.always:
            until = now
        else:
            until = next_allowed(now, zone_for(mt.msisdn, override=rules.zone, default=rules.default_zone), rules.window)
        if until > now:
            held[mt.id] = until
            continue
        if rules.caps.per_day or rules.caps.per_week:
            times = sent.setdefault(mt.subscriber_id, [])
            if not rules.caps.allows(times, now):
                held[mt.id] = "suppressed: cap reached"
                continue
            times.append(now)
    deferred = sum(1 for v in held.values() if not isinstance(v, str))
    if deferred:
        log.info("mt_deferred", count=deferred, reason="quiet hours")
    return held


#: Subscribers erased per store unit by the idle obligation. An erasure is some 25 indexed
#: deletes and the store's writer cannot split a unit, so a unit is kept short (some 220 ms
#: of writer time on SQLite for 50): MOs waiting for the writer meanwhile wait that long at
#: most. A run still erases every idle subscriber, in as many units as it takes.
IDLE_UNIT = 50


def run_idle_erasure(conn: sa.Connection, privacy: Privacy, now: float, *, limit: int = IDLE_UNIT) -> int:
    """One unit of the idle obligation: erase up to ``limit`` subscribers idle for the policy's
    ``erase_after_months``, keeping only the opt-outs they still need; returns how many.

    Idempotent: an erased subscriber is gone, so the next unit finds the next ones. Each
    erasure is audited; the caller audits the run.
    """
    cutoff = idle_cutoff(now, privacy.policy.obligations.erase_after_months)
    due = records.idle_subscribers(conn, cutoff, limit)
    if not due:
        return 0
    hashes = {sid: privacy.number_hash(e164) for sid, e164 in due}
    ledgers = records.load_consent(conn, set(hashes.values()))
    empty = ConsentState.empty()
    audit = []
    for sid, _ in due:
        keep = has_standing_opt_out(ledgers.get(hashes[sid], empty))
        records.erase_subscriber(conn, sid, hashes[sid], keep_opt_outs=keep)
        audit.append(record_erasure(ErasurePlan(sid, keep, ErasureReason.IDLE), at=now, subject=records.subject_ref(sid)))
    records.append_audit(conn, audit)
    return len(due)


async def run_obligations(store: Any, privacy: Privacy, now: float, *, batch: int = IDLE_UNIT) -> int:
    """One run of the scheduled obligations (idle erasure), in units of ``batch`` subscribers
    so that MOs keep flowing between them, until a unit finds fewer than ``batch`` (every idle
    subscriber is erased in one run, whatever ``batch``); audited and logged; returns how many
    were erased.

    Raises:
        StoreUnavailable: the store could not run a unit (what was erased before stays erased).
    """
    erased = 0
    while True:
        done = await store.write(run_idle_erasure, privacy, now, limit=batch)
        erased += done
        if done < batch:
            break
    months = privacy.policy.obligations.erase_after_months
    await store.write(audit_run, "erase_idle", now, erased, f"idle {months} months")
    log.info("obligation_run", obligation="erase_idle", erased=erased, months=months)
    return erased


def audit_run(conn: sa.Connection, obligation: str, now: float, count: int, detail: str = "") -> None:
    """Audit one run of an obligation."""
    records.append_audit(conn, [record_obligation_run(obligation, at=now, count=count, detail=detail)])


def audit_config(conn: sa.Connection, now: float, policy: Policy, campaigns: int, what: str) -> None:
    """Audit a load or reload of the configuration: the policy file's digest and the campaigns."""
    digest = ""
    if policy.source and Path(policy.source).is_file():
        digest = hashlib.sha256(Path(policy.source).read_bytes()).hexdigest()[:16]
    detail = f"policy {policy.source or '(none)'}" + (f" sha256 {digest}" if digest else "") + f"; {campaigns} campaigns"
    records.append_audit(conn, [AuditRecord(kind=AuditKind.CONFIG, at=now, who="gatewayd", operation=what, detail=detail)])

