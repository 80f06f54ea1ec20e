"""SMPP 3.4 numbers: command ids, command statuses, TLV tags and field bits.

Names follow the SMPP 3.4 specification (section 5) so that a reader can look each one up.
Command statuses on the wire may be vendor specific, so PDUs carry them as plain ``int`` and
:func:`describe_status` turns any of them into text for logs.
"""

from __future__ import annotations

import enum

__all__ = [
    "CommandId",
    "CommandStatus",
    "Tag",
    "BindMode",
    "EsmClass",
    "ESM_MESSAGE_TYPE_MASK",
    "ESM_UDHI",
    "DataCoding",
    "MessageState",
    "RESPONSE_BIT",
    "INTERFACE_VERSION_34",
    "TEMPORARY_STATUSES",
    "describe_status",
]

#: Set on the command_id of every response PDU.
RESPONSE_BIT = 0x80000000

#: interface_version octet for SMPP 3.4.
INTERFACE_VERSION_34 = 0x34


class CommandId(enum.IntEnum):
    """The command_id of every PDU in SMPP 3.4 (section 5.1.2.1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103

    @property
    def is_response(self) -> bool:
        """True for ``*_resp`` and generic_nack."""
        return bool(self.value & RESPONSE_BIT)


class CommandStatus(enum.IntEnum):
    """Known command_status values (SMPP 3.4 section 5.1.3)."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RINVPRTFLG = 0x06
    ESME_RINVREGDLVFLG = 0x07
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RCANCELFAIL = 0x11
    ESME_RREPLACEFAIL = 0x13
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVNUMDESTS = 0x33
    ESME_RINVDLNAME = 0x34
    ESME_RINVDESTFLAG = 0x40
    ESME_RINVSUBREP = 0x42
    ESME_RINVESMCLASS = 0x43
    ESME_RCNTSUBDL = 0x44
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RINVSYSTYP = 0x53
    ESME_RINVREPFLAG = 0x54
    ESME_RINVNUMMSGS = 0x55
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RINVDFTMSGID = 0x63
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_ROPTPARNOTALLWD = 0xC1
    ESME_RINVPARLEN = 0xC2
    ESME_RMISSINGOPTPARAM = 0xC3
    ESME_RINVOPTPARAMVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF


#: Statuses after which the same submit may succeed later: the sender slows down and retries.
TEMPORARY_STATUSES = frozenset(
    {
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RSYSERR,
    }
)


def describe_status(status: int) -> str:
    """Name a command_status for logs, including vendor-specific values.

    Args:
        status: the command_status as read from the wire.

    Returns:
        The SMPP name (``ESME_RTHROTTLED``) or ``vendor_0x00000400`` for unknown values.
    """
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"vendor_0x{status:08x}"


class Tag(enum.IntEnum):
    """TLV (optional parameter) tags of SMPP 3.4 section 5.3.2."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


class BindMode(enum.Enum):
    """Which directions a bind carries."""

    #: submit_sm only (ESME -> SMSC).
    TRANSMITTER = "transmitter"
    #: deliver_sm only (SMSC -> ESME).
    RECEIVER = "receiver"
    #: both directions on one connection.
    TRANSCEIVER = "transceiver"

    @property
    def can_submit(self) -> bool:
        """True if the ESME may send submit_sm on a bind of this mode."""
        return self is not BindMode.RECEIVER

    @property
    def can_receive(self) -> bool:
        """True if the SMSC may send deliver_sm on a bind of this mode."""
        return self is not BindMode.TRANSMITTER


class EsmClass(enum.IntFlag):
    """Bits of esm_class that the gateway reads or sets."""

    DEFAULT = 0x00
    #: Message type: SMSC delivery receipt (deliver_sm).
    DELIVERY_RECEIPT = 0x04
    #: Message type: intermediate delivery notification.
    INTERMEDIATE_NOTIFICATION = 0x20
    #: GSM feature: the short_message starts with a User Data Header.
    UDHI = 0x40
    #: GSM feature: reply path.
    REPLY_PATH = 0x80


#: esm_class bits 2-5 carry the message type.
ESM_MESSAGE_TYPE_MASK = 0x3C
#: :attr:`EsmClass.UDHI` as a plain int, to test a decoded esm_class with: an int and an
#: IntFlag are combined by enum's Python code, at about a microsecond each time.
ESM_UDHI = int(EsmClass.UDHI)


class DataCoding(enum.IntEnum):
    """data_coding values the gateway produces or understands (SMPP 3.4 section 5.2.19)."""

    SMSC_DEFAULT = 0x00
    IA5 = 0x01
    BINARY_8BIT = 0x02
    LATIN_1 = 0x03
    BINARY = 0x04
    UCS2 = 0x08


class MessageState(enum.IntEnum):
    """The message_state TLV (SMPP 3.4 section 5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8
