"""User Data Header (3GPP TS 23.040 9.2.3.24) parsing and building, and concatenation info.

A UDH is one length octet (UDHL) followed by information elements, each an identifier
(IEI), a length and a value. Inbound messages announce one with the UDHI bit of esm_class.
:func:`concat_info` is the inbound entry point: it works out whether a deliver_sm is part of
a concatenated message, whether told by a UDH or by the sar_* TLVs, and never raises,
because malformed traffic from an SMSC must not crash the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from gatewayd.smpp.constants import ESM_UDHI, Tag
from gatewayd.smpp.text import ConcatMethod

__all__ = [
    "IEI_CONCAT_8BIT",
    "IEI_CONCAT_16BIT",
    "IEI_PORTS_8BIT",
    "IEI_PORTS_16BIT",
    "InformationElements",
    "ConcatInfo",
    "parse_udh",
    "build_udh",
    "concat_info",
]

#: Concatenated short message, 8-bit reference: ref, total, index.
IEI_CONCAT_8BIT = 0x00
#: Application port addressing, 8-bit ports.
IEI_PORTS_8BIT = 0x04
#: Application port addressing, 16-bit ports.
IEI_PORTS_16BIT = 0x05
#: Concatenated short message, 16-bit reference: ref_hi, ref_lo, total, index.
IEI_CONCAT_16BIT = 0x08

#: Information elements in header order: ``((iei, value), ...)``.
InformationElements = tuple[tuple[int, bytes], ...]


@attrs.frozen
class ConcatInfo:
    """Where one part belongs in a concatenated message."""

    #: The concatenation reference shared by every part (8 or 16 bits, see ``method``).
    reference: int
    #: Number of parts, 1..255.
    total: int
    #: Position of this part, 1..total.
    index: int
    #: Which mechanism carried the information (UDH8, UDH16 or SAR).
    method: ConcatMethod


def parse_udh(data: bytes) -> tuple[InformationElements, bytes]:
    """Split user data that starts with a UDH into its information elements and the rest.

    Args:
        data: user data whose first octet is the UDHL.

    Returns:
        The information elements in order, and the user data that follows the header.

    Raises:
        ValueError: the data is empty, the UDHL runs past the end of the data, or an
            information element runs past the end of the header.
    """
    if not data:
        raise ValueError("empty user data has no UDH")
    end = 1 + data[0]
    if end > len(data):
        raise ValueError(f"UDHL {data[0]} is longer than the {len(data) - 1} octets that follow")
    ies: list[tuple[int, bytes]] = []
    pos = 1
    while pos < end:
        if pos + 2 > end:
            raise ValueError(f"truncated information element header at octet {pos}")
        iei, length = data[pos], data[pos + 1]
        pos += 2
        if pos + length > end:
            raise ValueError(f"information element 0x{iei:02X} runs past the end of the UDH")
        ies.append((iei, bytes(data[pos : pos + length])))
        pos += length
    return tuple(ies), bytes(data[end:])


def build_udh(ies: Iterable[tuple[int, bytes]]) -> bytes:
    """Build a UDH (UDHL included) from information elements.

    Args:
        ies: ``(iei, value)`` pairs in the order they should appear.

    Returns:
        The header octets, to be followed by the user data.

    Raises:
        ValueError: an IEI is not an octet, a value is longer than 255 octets, or the
            header would be longer than 255 octets.
    """
    body = bytearray()
    for iei, value in ies:
        if not 0 <= iei <= 0xFF:
            raise ValueError(f"IEI {iei} is not an octet")
        if len(value) > 0xFF:
            raise ValueError(f"information element 0x{iei:02X} is longer than 255 octets")
        body += bytes((iei, len(value)))
        body += value
    if len(body) > 0xFF:
        raise ValueError(f"the UDH would be {len(body)} octets, more than 255")
    return bytes((len(body),)) + bytes(body)


def _from_ies(ies: InformationElements) -> ConcatInfo | None:
    found: ConcatInfo | None = None
    for iei, value in ies:
        # TS 23.040: when a non-repeatable element occurs more than once, the last one counts.
        if iei == IEI_CONCAT_8BIT and len(value) == 3:
            found = ConcatInfo(value[0], value[1], value[2], ConcatMethod.UDH8)
        elif iei == IEI_CONCAT_16BIT and len(value) == 4:
            found = ConcatInfo((value[0] << 8) | value[1], value[2], value[3], ConcatMethod.UDH16)
    return found


def _from_tlvs(tlvs: Iterable[tuple[int, bytes]]) -> ConcatInfo | None:
    ref: int | None = None
    total: int | None = None
    index: int | None = None
    for tag, value in tlvs:
        if tag == Tag.SAR_MSG_REF_NUM and 1 <= len(value) <= 2:
            ref = int.from_bytes(value, "big")
        elif tag == Tag.SAR_TOTAL_SEGMENTS and len(value) == 1:
            total = value[0]
        elif tag == Tag.SAR_SEGMENT_SEQNUM and len(value) == 1:
            index = value[0]
    if ref is None or total is None or index is None:
        return None
    return ConcatInfo(ref, total, index, ConcatMethod.SAR)


def _sane(info: ConcatInfo | None) -> ConcatInfo | None:
    if info is None or info.total == 0 or not 1 <= info.index <= info.total:
        return None
    return info


def concat_info(
    *, esm_class: int, payload: bytes, tlvs: Iterable[tuple[int, bytes]]
) -> tuple[ConcatInfo | None, bytes]:
    """Find the concatenation info of an inbound message and strip its UDH; never raises.

    With the UDHI bit set, the UDH is parsed and the 8-bit (IEI 0x00) or 16-bit (IEI 0x08)
    concatenation element is looked for among the other elements, in any position. Without a
    UDH concatenation element, the sar_msg_ref_num, sar_total_segments and sar_segment_seqnum
    TLVs are used when all three are present.

    Args:
        esm_class: the PDU's esm_class.
        payload: short_message, or message_payload when present.
        tlvs: the PDU's optional parameters.

    Returns:
        The concatenation info (None for a message that stands alone or whose numbers make no
        sense: total 0, index 0 or index above total) and the user data without its UDH.
        When the UDH is malformed the payload is returned unchanged with None.
    """
    user_data = payload
    info: ConcatInfo | None = None
    if esm_class & ESM_UDHI:
        try:
            ies, user_data = parse_udh(payload)
        except ValueError:
            return None, payload
        info = _from_ies(ies)
    if info is None:
        info = _from_tlvs(tlvs)
    return _sane(info), user_data
