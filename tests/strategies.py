"""Hypothesis strategies for every PDU value of :mod:`gatewayd.smpp.pdus`.

Every value drawn is valid for :func:`gatewayd.smpp.codec.encode`: C-strings within their
SMPP 3.4 maximum (without the NUL) and free of NUL, octets in 0..255, short_message up to 254
octets, TLVs as ``(tag, value)`` pairs with arbitrary tags and values up to 300 octets.
Requests carry command_status 0; responses any 32-bit status.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gatewayd.smpp.constants import BindMode
from gatewayd.smpp.pdus import (
    AlertNotification,
    AnyPdu,
    Bind,
    BindResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    Unbind,
    UnbindResp,
)

__all__ = [
    "cstrings",
    "smpp_times",
    "octets",
    "sequences",
    "statuses",
    "short_messages",
    "tlvs",
    "PDU_STRATEGIES",
    "pdus",
    "binds",
    "bind_resps",
    "outbinds",
    "submit_sms",
    "submit_sm_resps",
    "deliver_sms",
    "deliver_sm_resps",
    "data_sms",
    "data_sm_resps",
    "alert_notifications",
]

_ASCII = st.characters(min_codepoint=1, max_codepoint=0x7F)
_LATIN1 = st.characters(min_codepoint=1, max_codepoint=0xFF)


def cstrings(max_size: int, *, latin1: bool = False) -> st.SearchStrategy[str]:
    """C-octet string values of at most ``max_size`` characters, never containing NUL.

    Args:
        max_size: the SMPP 3.4 maximum of the field, NUL excluded.
        latin1: draw from all of latin-1 (U+0001..U+00FF) instead of ASCII.
    """
    return st.text(_LATIN1 if latin1 else _ASCII, max_size=max_size)


def smpp_times(*, latin1: bool = False) -> st.SearchStrategy[str]:
    """schedule_delivery_time / validity_period values: empty, or exactly 16 characters."""
    sixteen = st.text(_LATIN1 if latin1 else _ASCII, min_size=16, max_size=16)
    realistic = st.from_regex(r"\A[0-9]{12}[0-9]{3}[R+-]\Z")
    return st.one_of(st.just(""), realistic, sixteen)


def octets() -> st.SearchStrategy[int]:
    """One-octet integer fields: 0..255."""
    return st.integers(0, 0xFF)


def sequences() -> st.SearchStrategy[int]:
    """sequence_number values: 0 (not yet sent) and 1..0x7FFFFFFF."""
    return st.integers(0, 0x7FFFFFFF)


def statuses() -> st.SearchStrategy[int]:
    """command_status values of responses, vendor ones included."""
    return st.one_of(st.integers(0, 0x110), st.integers(0, 0xFFFFFFFF))


def short_messages() -> st.SearchStrategy[bytes]:
    """short_message values: 0..254 octets."""
    return st.binary(max_size=254)


def tlvs(max_items: int = 4, max_value: int = 300) -> st.SearchStrategy[Tlvs]:
    """Optional parameters in wire order; tags may repeat and may be unknown."""
    pair = st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=max_value))
    return st.lists(pair, max_size=max_items).map(tuple)


def _requests(cls: type, **fields: Any) -> st.SearchStrategy[Any]:
    return st.builds(cls, sequence=sequences(), command_status=st.just(0), **fields)


def _responses(cls: type, **fields: Any) -> st.SearchStrategy[Any]:
    return st.builds(cls, sequence=sequences(), command_status=statuses(), **fields)


def binds(*, latin1: bool = False) -> st.SearchStrategy[Bind]:
    """bind_transmitter/receiver/transceiver values (the mode picks the command)."""
    return _requests(
        Bind,
        mode=st.sampled_from(BindMode),
        system_id=cstrings(15, latin1=latin1),
        password=cstrings(8, latin1=latin1),
        system_type=cstrings(12, latin1=latin1),
        interface_version=octets(),
        addr_ton=octets(),
        addr_npi=octets(),
        address_range=cstrings(40, latin1=latin1),
    )


def bind_resps(*, latin1: bool = False) -> st.SearchStrategy[BindResp]:
    """bind_*_resp values."""
    return _responses(
        BindResp, mode=st.sampled_from(BindMode), system_id=cstrings(15, latin1=latin1), tlvs=tlvs()
    )


def outbinds(*, latin1: bool = False) -> st.SearchStrategy[Outbind]:
    """outbind values."""
    return _requests(Outbind, system_id=cstrings(15, latin1=latin1), password=cstrings(8, latin1=latin1))


def _short_message_fields(latin1: bool) -> dict[str, st.SearchStrategy[Any]]:
    return dict(
        service_type=cstrings(5, latin1=latin1),
        source_addr_ton=octets(),
        source_addr_npi=octets(),
        source_addr=cstrings(20, latin1=latin1),
        dest_addr_ton=octets(),
        dest_addr_npi=octets(),
        destination_addr=cstrings(20, latin1=latin1),
        esm_class=octets(),
        protocol_id=octets(),
        priority_flag=octets(),
        schedule_delivery_time=smpp_times(latin1=latin1),
        validity_period=smpp_times(latin1=latin1),
        registered_delivery=octets(),
        replace_if_present_flag=octets(),
        data_coding=octets(),
        sm_default_msg_id=octets(),
        short_message=short_messages(),
        tlvs=tlvs(),
    )


def submit_sms(*, latin1: bool = False) -> st.SearchStrategy[SubmitSm]:
    """submit_sm values."""
    return _requests(SubmitSm, **_short_message_fields(latin1))


def deliver_sms(*, latin1: bool = False) -> st.SearchStrategy[DeliverSm]:
    """deliver_sm values (MOs and receipts alike: esm_class is any octet)."""
    return _requests(DeliverSm, **_short_message_fields(latin1))


def submit_sm_resps(*, latin1: bool = False) -> st.SearchStrategy[SubmitSmResp]:
    """submit_sm_resp values."""
    return _responses(SubmitSmResp, message_id=cstrings(64, latin1=latin1))


def deliver_sm_resps(*, latin1: bool = False) -> st.SearchStrategy[DeliverSmResp]:
    """deliver_sm_resp values."""
    return _responses(DeliverSmResp, message_id=cstrings(64, latin1=latin1))


def data_sms(*, latin1: bool = False) -> st.SearchStrategy[DataSm]:
    """data_sm values."""
    return _requests(
        DataSm,
        service_type=cstrings(5, latin1=latin1),
        source_addr_ton=octets(),
        source_addr_npi=octets(),
        source_addr=cstrings(64, latin1=latin1),
        dest_addr_ton=octets(),
        dest_addr_npi=octets(),
        destination_addr=cstrings(64, latin1=latin1),
        esm_class=octets(),
        registered_delivery=octets(),
        data_coding=octets(),
        tlvs=tlvs(),
    )


def data_sm_resps(*, latin1: bool = False) -> st.SearchStrategy[DataSmResp]:
    """data_sm_resp values."""
    return _responses(DataSmResp, message_id=cstrings(64, latin1=latin1), tlvs=tlvs())


def alert_notifications(*, latin1: bool = False) -> st.SearchStrategy[AlertNotification]:
    """alert_notification values."""
    return _requests(
        AlertNotification,
        source_addr_ton=octets(),
        source_addr_npi=octets(),
        source_addr=cstrings(64, latin1=latin1),
        esme_addr_ton=octets(),
        esme_addr_npi=octets(),
        esme_addr=cstrings(64, latin1=latin1),
        tlvs=tlvs(),
    )


#: One strategy per PDU class, ASCII C-strings.
PDU_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    Bind: binds(),
    BindResp: bind_resps(),
    Outbind: outbinds(),
    Unbind: _requests(Unbind),
    UnbindResp: _responses(UnbindResp),
    EnquireLink: _requests(EnquireLink),
    EnquireLinkResp: _responses(EnquireLinkResp),
    GenericNack: _responses(GenericNack),
    SubmitSm: submit_sms(),
    SubmitSmResp: submit_sm_resps(),
    DeliverSm: deliver_sms(),
    DeliverSmResp: deliver_sm_resps(),
    DataSm: data_sms(),
    DataSmResp: data_sm_resps(),
    AlertNotification: alert_notifications(),
}


def pdus(*, latin1: bool = False) -> st.SearchStrategy[AnyPdu]:
    """Any PDU value of any class.

    Args:
        latin1: draw C-strings from all of latin-1 instead of ASCII.
    """
    if not latin1:
        return st.one_of(*PDU_STRATEGIES.values())
    return st.one_of(
        binds(latin1=True),
        bind_resps(latin1=True),
        outbinds(latin1=True),
        submit_sms(latin1=True),
        submit_sm_resps(latin1=True),
        deliver_sms(latin1=True),
        deliver_sm_resps(latin1=True),
        data_sms(latin1=True),
        data_sm_resps(latin1=True),
        alert_notifications(latin1=True),
        *(PDU_STRATEGIES[cls] for cls in (Unbind, UnbindResp, EnquireLink, EnquireLinkResp, GenericNack)),
    )
