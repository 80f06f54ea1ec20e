"""Decode and encode rates of the SMPP codec, next to smpplib's, in PDUs per second.

Run from the repository root::

    python bench/codec.py            # 50,000 PDUs per run, best of 3
    python bench/codec.py --quick    # 5,000 PDUs per run, best of 3

Cases: a deliver_sm MO with two TLVs, a deliver_sm delivery receipt with the
receipted_message_id, message_state and network_error_code TLVs, and a submit_sm.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import attrs  # noqa: E402
from smpplib import smpp  # noqa: E402

from gatewayd.smpp.codec import decode, encode  # noqa: E402
from gatewayd.smpp.constants import DataCoding, EsmClass, MessageState, Tag  # noqa: E402
from gatewayd.smpp.pdus import DeliverSm, SubmitSm  # noqa: E402

_RECEIPT_TEXT = (
    b"id:5f3a9c sub:001 dlvrd:001 submit date:2511221030 done date:2511221031"
    b" stat:DELIVRD err:000 text:Hello world"
)


class _SeqGen:
    """The two members smpplib's PDU layer needs from a client."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


def _cases() -> dict[str, tuple[Any, Callable[[], Any]]]:
    """Each case as (our PDU value, a function building the equal smpplib PDU)."""
    client = _SeqGen()
    mo = DeliverSm(
        sequence=1001,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        dest_addr_ton=3,
        destination_addr="60777",
        data_coding=DataCoding.SMSC_DEFAULT,
        short_message=b"JOIN PROMO please",
        tlvs=((Tag.SOURCE_PORT, b"\x0b\x84"), (Tag.DESTINATION_PORT, b"\x23\xf0")),
    )
    receipt = DeliverSm(
        sequence=1002,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        dest_addr_ton=3,
        destination_addr="60777",
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=_RECEIPT_TEXT,
        tlvs=(
            (Tag.RECEIPTED_MESSAGE_ID, b"5f3a9c\0"),
            (Tag.MESSAGE_STATE, bytes([MessageState.DELIVERED])),
            (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00"),
        ),
    )
    submit = SubmitSm(
        sequence=1003,
        source_addr_ton=3,
        source_addr="60777",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=b"Your code is 123456. Reply STOP to opt out.",
    )

    def common(pdu: Any) -> dict[str, Any]:
        return dict(
            client=client,
            service_type=pdu.service_type,
            source_addr_ton=pdu.source_addr_ton,
            source_addr_npi=pdu.source_addr_npi,
            source_addr=pdu.source_addr,
            dest_addr_ton=pdu.dest_addr_ton,
            dest_addr_npi=pdu.dest_addr_npi,
            destination_addr=pdu.destination_addr,
            esm_class=int(pdu.esm_class),
            registered_delivery=pdu.registered_delivery,
            data_coding=int(pdu.data_coding),
            short_message=pdu.short_message,
        )

    def smpplib_mo() -> Any:
        made = smpp.make_pdu("deliver_sm", source_port=2948, destination_port=9200, **common(mo))
        made.sequence = mo.sequence
        return made

    def smpplib_receipt() -> Any:
        made = smpp.make_pdu(
            "deliver_sm",
            receipted_message_id="5f3a9c",
            message_state=2,
            network_error_code=b"\x03\x00\x00",
            **common(receipt),
        )
        made.sequence = receipt.sequence
        return made

    def smpplib_submit() -> Any:
        made = smpp.make_pdu("submit_sm", **common(submit))
        made.sequence = submit.sequence
        return made

    return {
        "deliver_sm MO + 2 TLVs": (mo, smpplib_mo),
        "deliver_sm receipt + 3 TLVs": (receipt, smpplib_receipt),
        "submit_sm": (submit, smpplib_submit),
    }


def _rate(fn: Callable[[], Any], number: int, repeat: int = 3) -> float:
    """Best rate of ``repeat`` runs of ``number`` calls, in calls per second."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - start)
    return number / best


def main(argv: list[str] | None = None) -> None:
    """Print decode and encode rates for each case, ours against smpplib's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (5,000 PDUs each)")
    parser.add_argument("-n", type=int, default=None, help="PDUs per run (default 50,000)")
    args = parser.parse_args(argv)
    number = args.n or (5_000 if args.quick else 50_000)
    logging.getLogger("smpplib").setLevel(logging.ERROR)

    print(f"Python {sys.version.split()[0]}, best of 3 runs x {number:,} PDUs, PDUs/s (higher is better)")
    print()
    header = f"{'case':<30} {'op':<7} {'gatewayd':>12} {'smpplib':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, (pdu, build_smpplib) in _cases().items():
        frame = encode(pdu)
        smpplib_frame = build_smpplib().generate()
        theirs_decoded = decode(smpplib_frame)
        # smpplib writes TLVs in its own table order, so compare them as sets.
        if decode(frame) != pdu or attrs.evolve(theirs_decoded, tlvs=pdu.tlvs) != pdu or (
            sorted(theirs_decoded.tlvs) != sorted(pdu.tlvs)
        ):
            raise SystemExit(f"{name}: the two encodings disagree; the comparison would be meaningless")
        client = _SeqGen()

        ours = _rate(lambda: decode(frame), number)
        theirs = _rate(
            lambda: smpp.parse_pdu(smpplib_frame, client=client, allow_unknown_opt_params=True),
            max(number // 10, 500),
        )
        print(f"{name:<30} {'decode':<7} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>6.1f}x")
        ours = _rate(lambda: encode(pdu), number)
        theirs = _rate(lambda: build_smpplib().generate(), max(number // 10, 500))
        print(f"{'':<30} {'encode':<7} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>6.1f}x")

    receipt = _cases()["deliver_sm receipt + 3 TLVs"][0]
    fields = {f.name: getattr(receipt, f.name) for f in attrs.fields(DeliverSm)}
    construct = _rate(lambda: DeliverSm(**fields), number)
    print()
    print(f"for scale: constructing the frozen DeliverSm value alone: {construct:,.0f}/s")
    print("(smpplib runs use a tenth of the PDUs per run: it is ~10-30x slower)")


if __name__ == "__main__":
    main()
