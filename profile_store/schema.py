"""Every table of the store, in one MetaData.

NOTES (conventions every table follows):

* Times are UTC seconds since the epoch, stored as REAL (``*_at`` columns). They compare and
  subtract cheaply in SQL ("idle for 12 months", "due now") on SQLite and PostgreSQL alike.
* A subscriber's number is stored once, in ``subscribers.msisdn``, normalised to E.164
  ("+447700900123"). Every other table refers to ``subscribers.id``.
* Status columns hold the lower-case names of the enums in :mod:`profile_store.values`;
  a CHECK constraint lists the allowed values.
* Idempotency: an MT part is unique per (MT, part index); a claimed MO or MT changes status
  with a conditional UPDATE, so work handed over twice is done once. SMPP gives MOs no id,
  so a redelivered MO is recognised by its content within a time window (an indexed lookup
  on ``mo_parts``), not by a unique key. Receipts are kept as events, matched or not.
* Booleans are SQLAlchemy ``Boolean`` (INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL).
* Every foreign-key column is indexed, so purging a subscriber or following a message to
  its parts never scans a whole table.
* The schema only changes through the migrations in ``profile_store/migrations``; a test
  checks that migrating an empty database gives exactly these tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, false, func, literal_column
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "metadata",
    "subscribers",
    "mo_parts",
    "mo_messages",
    "mt_messages",
    "mt_parts",
    "dlr_events",
    "campaigns",
    "campaign_state",
    "sessions",
    "campaign_records",
    "profile_facts",
    "coupons",
    "alert_subscriptions",
    "consent_events",
    "customer_profiles",
    "customer_campaigns",
    "subscriber_attributes",
    "audit_log",
    "sends",
    "send_recipients",
    "MO_PART_STATUSES",
    "MO_STATUSES",
    "MT_STATUSES",
    "MT_PART_STATUSES",
    "MT_KINDS",
    "MT_QUEUED",
    "MT_SENDING",
    "MT_ACTIVE",
    "CONSENT_EVENTS",
    "SEND_STATUSES",
    "RECIPIENT_STATUSES",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

MO_PART_STATUSES = ("pending", "assembled", "expired")
MO_STATUSES = ("stored", "processed", "failed", "ignored")
MT_STATUSES = ("queued", "sending", "submitted", "delivered", "undelivered", "failed", "expired", "cancelled")
MT_PART_STATUSES = ("pending", "accepted", "delivered", "undelivered", "failed", "expired")
#: What an MT is to the privacy policy: the answer to the subscriber's own MO, a message the
#: gateway starts, a reply to a consent keyword (STOP/START/YES/HELP/MYDATA), or the fixed
#: reply to a subscriber known to be under age.
MT_KINDS = ("response", "marketing", "keyword", "refusal")
CONSENT_EVENTS = ("opt_in", "opt_in_requested", "confirmed", "opt_out")
SEND_STATUSES = ("scheduled", "running", "paused", "cancelled", "done")
RECIPIENT_STATUSES = ("queued", "suppressed")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_valid")


# --- people -----------------------------------------------------------------------------

#: A subscriber: one row per phone number ever seen or written to.
subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("msisdn", String(20), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)

# --- mobile originated ----------------------------------------------------------------------

#: One deliver_sm / data_sm as received: a whole MO, or one part of a concatenated MO
#: until all its parts are in (then ``mo_id`` points at the assembled message).
mo_parts = Table(
    "mo_parts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("smsc", String(32), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("short_code", String(21), nullable=False),
    # sha256 of what identifies a redelivery: SMSC, source, destination, esm_class,
    # data_coding, payload and the sar_* TLVs.
    Column("dedupe_key", String(64), nullable=False),
    # Groups the parts of one concatenated MO: source|destination|method|reference|total.
    Column("concat_key", String(128), nullable=True),
    Column("part_index", SmallInteger, nullable=True),
    Column("part_total", SmallInteger, nullable=True),
    Column("esm_class", SmallInteger, nullable=False),
    Column("data_coding", SmallInteger, nullable=False),
    # The octets as received (UDH included), and the decoded text without the UDH.
    Column("payload", LargeBinary, nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mo_id", Integer, ForeignKey("mo_messages.id"), nullable=True),
    # The SMPP connection it arrived on: a redelivery comes on another one.
    Column("connection", String(32), nullable=True),
    _one_of("status", MO_PART_STATUSES),
    Index(None, "smsc", "dedupe_key", "received_at"),
    # Status first: expire_incomplete reads the pending parts grouped by concat_key from one
    # range of it, and a group's pending parts are (status, concat_key) equalities.
    Index(None, "status", "concat_key"),
    Index(None, "subscriber_id"),
    Index(None, "mo_id"),
)

#: A complete MO as the campaigns see it: one per single message, one per assembled
#: concatenated message (``complete`` is false when parts were missing at expiry).
mo_messages = Table(
    "mo_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("smsc", String(32), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("short_code", String(21), nullable=False),
    Column("text", Text, nullable=False),
    Column("data_coding", SmallInteger, nullable=False),
    Column("parts", SmallInteger, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
    # The routing outcome recorded with the MO (system keyword, campaign, no route).
    Column("route", String(64), nullable=True),
    Column("processed_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    # The campaign the MO reached (by keyword, session or default, or closed), if any.
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=True),
    _one_of("status", MO_STATUSES),
    Index(None, "status", "id"),
    Index(None, "subscriber_id"),
    Index(None, "campaign_id"),
)

# --- mobile terminated ----------------------------------------------------------------------

#: The outbox: one row per MT as the sender asked for it, however many parts it needs.
#: queued -> sending (claimed by a node) -> submitted (every part accepted by the SMSC)
#: -> delivered / undelivered / expired (receipts); or failed / cancelled.
mt_messages = Table(
    "mt_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("source_addr", String(21), nullable=False),
    # The SMSC to send through; NULL lets the sender pick one serving source_addr.
    Column("smsc", String(32), nullable=True),
    Column("text", Text, nullable=False),
    # NULL: GSM 03.38 when the text allows, else UCS-2.
    Column("data_coding", SmallInteger, nullable=True),
    # The concatenation reference used by every attempt, so handsets reassemble retries.
    Column("concat_ref", Integer, nullable=False),
    Column("parts_total", SmallInteger, nullable=False),
    # 0 for replies to a subscriber's MO; larger numbers go later (bulk campaign traffic).
    Column("priority", SmallInteger, nullable=False),
    Column("registered_delivery", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", SmallInteger, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("in_reply_to", Integer, ForeignKey("mo_messages.id"), nullable=True),
    Column("campaign", String(64), nullable=True),
    # The node that claimed the row for sending, and until when the claim holds.
    Column("claimed_by", String(64), nullable=True),
    Column("claim_expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Checked again at submit time: a STOP suppresses the queued MTs it covers.
    Column("kind", String(16), nullable=False, server_default="response"),
    # The outbound send it belongs to (multicast, send-again), if any.
    Column("send_id", Integer, ForeignKey("sends.id"), nullable=True),
    _one_of("status", MT_STATUSES),
    _one_of("kind", MT_KINDS),
    Index(None, "subscriber_id"),
    # Without the status: a campaign's report groups its rows by status anyway, and every
    # status change of a reply (sending, submitted, delivered) would move its entry.
    Index(None, "campaign"),
)

#: The conditions the outbox's partial indexes hold, the status written as a constant: a
#: query can use such an index only if its WHERE says the same (a parameter will not do).
MT_QUEUED = mt_messages.c.status == literal_column("'queued'")
MT_SENDING = mt_messages.c.status == literal_column("'sending'")
MT_ACTIVE = mt_messages.c.status.in_([literal_column("'queued'"), literal_column("'sending'")])

#: What the outbox claims: the queued rows of each priority by due time, and the sending
#: rows by claim expiry. Partial, so an MT leaves both once submitted and its receipts'
#: status changes maintain neither.
Index("ix_mt_messages_queued", mt_messages.c.priority, mt_messages.c.next_attempt_at, sqlite_where=MT_QUEUED, postgresql_where=MT_QUEUED)
Index("ix_mt_messages_sending", mt_messages.c.claim_expires_at, sqlite_where=MT_SENDING, postgresql_where=MT_SENDING)


def _where_present(name: str, *columns: Column[Any]) -> Index:
    """An index of the rows whose first column is not NULL, on both dialects."""
    present = columns[0].is_not(None)
    return Index(name, *columns, sqlite_where=present, postgresql_where=present)


# A reply belongs to no send and a multicast message answers no MO: indexing only the rows
# that have one spares every MT an index entry no query looks up (each compares with a value).
_where_present("ix_mt_messages_in_reply_to", mt_messages.c.in_reply_to)
_where_present("ix_mt_messages_send_id_subscriber_id", mt_messages.c.send_id, mt_messages.c.subscriber_id)
#: finish_sends: does a running send still have a queued or sending MT? Partial: replies
#: (no send) never touch it, nor does an MT once submitted, so neither their inserts nor
#: their receipts' status changes maintain it.
_ACTIVE_OF_SEND = and_(mt_messages.c.send_id.is_not(None), MT_ACTIVE)
Index("ix_mt_messages_send_id_active", mt_messages.c.send_id, sqlite_where=_ACTIVE_OF_SEND, postgresql_where=_ACTIVE_OF_SEND)

#: One submit_sm of an MT: its SMSC message id, and what the SMSC and the receipt said.
mt_parts = Table(
    "mt_parts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mt_id", Integer, ForeignKey("mt_messages.id"), nullable=False),
    Column("part_index", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("smsc", String(32), nullable=True),
    # Normalised per the SMSC's message_id_format so receipts find it.
    Column("smsc_message_id", String(65), nullable=True),
    Column("submit_status", Integer, nullable=True),
    Column("receipt_stat", String(8), nullable=True),
    Column("submitted_at", Float, nullable=True),
    Column("done_at", Float, nullable=True),
    # The part may have been submitted without its id being recorded (its sender died or
    # gave up waiting): only such parts are matched to receipts by recipient and text.
    Column("uncertain", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("mt_id", "part_index"),
    _one_of("status", MT_PART_STATUSES),
    Index(None, "smsc", "smsc_message_id"),
)

#: Every delivery receipt received, matched to its MT part or not (yet).
dlr_events = Table(
    "dlr_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("smsc", String(32), nullable=False),
    Column("smsc_message_id", String(65), nullable=False),
    Column("mt_part_id", Integer, ForeignKey("mt_parts.id"), nullable=True),
    Column("stat", String(8), nullable=True),
    Column("err", String(8), nullable=True),
    Column("message_state", SmallInteger, nullable=True),
    Column("received_at", Float, nullable=False),
    Column("matched", Boolean, nullable=False),
    # The handset (E.164) and the receipt's "text:" quote: they identify the MT when the id
    # does not (a submission whose submit_sm_resp was lost with a crashed process). The
    # number is kept only on a receipt that matched nothing when it arrived.
    Column("recipient", String(20), nullable=True),
    Column("text", String(32), nullable=True),
    Index(None, "smsc", "smsc_message_id"),
    Index(None, "mt_part_id"),
)
# Almost every receipt matches its part when it arrives: indexing only the unmatched ones
# (held, or never matched) and only the numbers kept spares each receipt two index entries.
_UNMATCHED = dlr_events.c.matched.is_(False)
Index("ix_dlr_events_unmatched_received_at", dlr_events.c.received_at, sqlite_where=_UNMATCHED, postgresql_where=_UNMATCHED)
_where_present("ix_dlr_events_recipient", dlr_events.c.recipient)

# --- campaigns ------------------------------------------------------------------------------

#: A campaign as last loaded from its sheet. Rows stay after a sheet is removed, so the
#: messages and results that refer to it keep their meaning.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    # The data user responsible for what the campaign collects.
    Column("owner", String(200), nullable=False),
    Column("module", String(64), nullable=False),
    Column("short_code", String(21), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: A module's own state for one subscriber in one campaign (votes cast, quiz progress),
#: as a JSON object.
campaign_state = Table(
    "campaign_state",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "subscriber_id"),
)

#: A sticky session: the subscriber's MOs to this short code go to the campaign, keyword
#: or not, until the session expires.
sessions = Table(
    "sessions",
    metadata,
    Column("short_code", String(21), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
    Column("expires_at", Float, nullable=False),
    Index(None, "subscriber_id"),
    # Both columns: erasing one campaign's session of a subscriber finds it at once.
    Index(None, "campaign_id", "subscriber_id"),
)

#: A result counted by a module: a vote, an answer, a score. Tallies add up the records
#: not withdrawn, by (kind, key).
campaign_records = Table(
    "campaign_records",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
    # NULL once the subscriber's local profile was erased: the result still counts, but no
    # longer says whose it is.
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=True),
    Column("mo_id", Integer, ForeignKey("mo_messages.id"), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("recorded_at", Float, nullable=False),
    # True once a later record replaced it (a changed vote).
    Column("withdrawn", Boolean, nullable=False),
    Index(None, "campaign_id", "kind", "key"),
    Index(None, "campaign_id", "subscriber_id", "kind"),
    Index(None, "subscriber_id"),
    Index(None, "mo_id"),
)

#: The local profile: pairs of an object or event and the subscriber's attitude to it,
#: collected by one campaign.
profile_facts = Table(
    "profile_facts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("object", String(200), nullable=False),
    Column("attitude", Text, nullable=False),
    Column("mo_id", Integer, ForeignKey("mo_messages.id"), nullable=True),
    Column("recorded_at", Float, nullable=False),
    Index(None, "campaign_id", "subscriber_id"),
    Index(None, "subscriber_id"),
    Index(None, "mo_id"),
)

#: The code pool of a coupon campaign: unclaimed until a subscriber gets the code.
coupons = Table(
    "coupons",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=True),
    Column("claimed_at", Float, nullable=True),
    Column("redeemed_at", Float, nullable=True),
    UniqueConstraint("campaign_id", "code"),
    Index(None, "campaign_id", "subscriber_id"),
    Index(None, "subscriber_id"),
)
#: The free codes of a campaign in id order: claim_coupon's lowest free code is the first entry.
#: Partial: a query can use it only if its WHERE says ``claimed_at IS NULL`` too.
Index(
    "ix_coupons_campaign_id_id_unclaimed",
    coupons.c.campaign_id,
    coupons.c.id,
    sqlite_where=coupons.c.claimed_at.is_(None),
    postgresql_where=coupons.c.claimed_at.is_(None),
)
#: redeem_coupon compares codes case-insensitively, as ``upper(code)``: a query must say
#: exactly this expression to use the index. SQLite cannot reflect an expression-based index,
#: so a later revision that rebuilds ``coupons`` with a batch operation must create it again.
Index("ix_coupons_campaign_id_upper_code", coupons.c.campaign_id, func.upper(coupons.c.code))

#: Who receives the alerts of a topic (the lists multicast campaigns send to).
alert_subscriptions = Table(
    "alert_subscriptions",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("subscribed_at", Float, nullable=False),
    # Leads with subscriber_id, so it also serves the foreign key and erasure by subscriber;
    # the campaign makes unsubscribing one campaign's topics a single range.
    Index(None, "subscriber_id", "campaign_id"),
)


# --- privacy --------------------------------------------------------------------------------

#: The consent ledger: append-only, one row per event (see :mod:`permissions.consent`).
#: Keyed by a keyed hash of the number, so an opt-out outlives the erasure of everything
#: else about the subscriber (``subscriber_id`` is then NULL).
consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True),
    # HMAC-SHA256 of the E.164 number under the gateway's privacy key, hex.
    Column("number_hash", String(64), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=True),
    Column("event", String(20), nullable=False),
    # "all" or "marketing" for opt-ins and opt-outs; NULL for requests and confirmations.
    Column("purpose", String(16), nullable=True),
    # The scope: its kind and the names it needs (see permissions.consent.Scope).
    Column("scope_kind", String(16), nullable=False),
    Column("scope_short_code", String(21), nullable=False),
    Column("scope_owner", String(200), nullable=False),
    Column("scope_campaign", String(64), nullable=False),
    # The evidence: when, which short code and keyword, which MO (no foreign key: the MO
    # may be erased while the opt-out it proves must stay).
    Column("at", Float, nullable=False),
    Column("short_code", String(21), nullable=False),
    Column("keyword", String(64), nullable=False),
    Column("mo_id", Integer, nullable=True),
    Column("note", Text, nullable=False),
    # Opt-in requests only: the last moment a YES confirms it.
    Column("expires_at", Float, nullable=True),
    Column("recorded_at", Float, nullable=False),
    _one_of("event", CONSENT_EVENTS),
    Index(None, "number_hash", "at"),
    Index(None, "subscriber_id"),
)

#: The customer profile: one row per subscriber who took part, updated as MOs arrive.
#: Recency and frequency scores are computed from it when read.
customer_profiles = Table(
    "customer_profiles",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("first_seen_at", Float, nullable=False),
    # The last MO: what "N months without participation" counts from.
    Column("last_seen_at", Float, nullable=False),
    # Every MO processed, and those that reached a campaign.
    Column("mos", Integer, nullable=False),
    Column("campaign_mos", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "last_seen_at"),
)

#: The campaigns a subscriber joined: first and last MO to each, and how many.
customer_campaigns = Table(
    "customer_campaigns",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), primary_key=True),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("mos", Integer, nullable=False),
    # Segments' took_part_in / not_in read the subscribers of a campaign from it (on
    # PostgreSQL, as an index-only scan). No column that every MO updates (last_at, mos) is
    # in it, so counting an MO leaves the index alone.
    Index(None, "campaign_id", "subscriber_id"),
)

#: What a subscriber declared about themselves (age_band, postcode, ...): the latest value
#: of each attribute, and the campaign that asked.
subscriber_attributes = Table(
    "subscriber_attributes",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=True),
    Column("declared_at", Float, nullable=False),
    # Segments select by attribute (PostgreSQL reads the matching rows from it).
    Index(None, "name", "value"),
    # Both columns: erasing what one campaign collected about a subscriber finds it at once.
    Index(None, "campaign_id", "subscriber_id"),
)

#: The audit trail: one row per :class:`permissions.audit.AuditRecord`, hash-chained in id
#: order (``digest`` covers the previous row's digest and this record). Never updated.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("who", String(200), nullable=False),
    # A pseudonymous reference ("subscriber 42"), never a number.
    Column("subject", String(200), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("category", String(200), nullable=False),
    Column("purpose", String(200), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Index(None, "subject"),
)


# --- outbound campaigns ---------------------------------------------------------------------

#: One outbound send of a campaign: a message to a segment, materialised once into the outbox
#: (``mt_messages.send_id``). A send-again follows up its ``parent``'s non-responders.
sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
    # Unique per campaign ("2026-11-24T09:00:00Z", "again-1 of ..."): a schedule entry creates
    # its send once, however often the scheduler looks.
    Column("name", String(100), nullable=False),
    Column("parent_id", Integer, ForeignKey("sends.id"), nullable=True),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("scheduled_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # Recipients the segment selected, and how long materialising them took.
    Column("targeted", Integer, nullable=False),
    Column("materialise_seconds", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("campaign_id", "name"),
    _one_of("status", SEND_STATUSES),
    Index(None, "status", "scheduled_at"),
    Index(None, "parent_id"),
)

#: Who a send selected: queued (its MT is the one with this send_id and subscriber_id) or
#: suppressed when it was materialised (with why).
send_recipients = Table(
    "send_recipients",
    metadata,
    Column("send_id", Integer, ForeignKey("sends.id"), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("status", String(16), nullable=False),
    # "opted_out", "no_consent", "under_age", "policy": why a recipient was suppressed.
    Column("reason", String(32), nullable=True),
    _one_of("status", RECIPIENT_STATUSES),
    Index(None, "subscriber_id"),
)
