"""The SMPP 3.4 wire codec: framing a byte stream, and frames <-> PDU values.

* :class:`FrameReader` splits a byte stream into frames by command_length.
* :func:`decode` turns one frame into a value of :mod:`gatewayd.smpp.pdus`. It is liberal:
  over-long C-strings, unknown TLVs, a header-only ``*_resp`` to an error, a body on
  generic_nack (or on any other header-only PDU), and trailing octets after the last field of
  a PDU without TLVs are all accepted. Anything it cannot decode raises :class:`DecodeError`
  with the command_status to answer with.
* :func:`encode` turns a PDU value into a frame. It is strict: a value that does not fit its
  SMPP 3.4 field raises :class:`EncodeError` instead of being truncated.
* :func:`peek_header` reads the four header fields without decoding the body.

Nothing here does I/O; the session and the trio transport drive it.
"""

from __future__ import annotations

from gatewayd.smpp._decode import HEADER, UNSUPPORTED_COMMANDS, decode
from gatewayd.smpp._encode import FIELD_SPECS, encode
from gatewayd.smpp.constants import CommandStatus
from gatewayd.smpp.errors import DecodeError, FramingError

__all__ = [
    "DEFAULT_MAX_PDU_LENGTH",
    "MIN_PDU_LENGTH",
    "FrameReader",
    "decode",
    "encode",
    "peek_header",
    "FIELD_SPECS",
    "UNSUPPORTED_COMMANDS",
]

#: Largest command_length a :class:`FrameReader` accepts unless told otherwise.
DEFAULT_MAX_PDU_LENGTH = 65536
#: Smallest possible command_length: a PDU is at least its 16-octet header.
MIN_PDU_LENGTH = 16

_unpack_header = HEADER.unpack_from

# Compact the buffer once this many consumed octets sit in front of the unread ones.
_COMPACT_THRESHOLD = 1 << 16


def peek_header(data: bytes) -> tuple[int, int, int, int]:
    """Read the PDU header at the start of ``data`` without looking at the body.

    Args:
        data: a frame, or any buffer starting with at least 16 octets of one.

    Returns:
        ``(command_length, command_id, command_status, sequence)``.

    Raises:
        DecodeError: ``data`` is shorter than a header (command_status ESME_RINVCMDLEN).
    """
    if len(data) < MIN_PDU_LENGTH:
        raise DecodeError(
            f"{len(data)} octets are shorter than a PDU header",
            command_id=0,
            sequence=0,
            command_status=CommandStatus.ESME_RINVCMDLEN,
        )
    length, cid, status, seq = _unpack_header(data)
    return length, cid, status, seq


class FrameReader:
    """Split a byte stream into frames by their command_length.

    Feed it whatever the transport receives and take frames out until it answers None::

        reader.feed(await stream.receive_some())
        while (frame := reader.next_frame()) is not None:
            handle(decode(frame))

    Consumed octets are skipped with an offset and the buffer is compacted only now and
    then, so a read holding thousands of small PDUs is split in linear time.

    Args:
        max_length: the largest command_length accepted; a larger one is a framing error.
    """

    __slots__ = ("_buf", "_pos", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> None:
        if max_length < MIN_PDU_LENGTH:
            raise ValueError(f"max_length must be at least {MIN_PDU_LENGTH}, got {max_length}")
        self.max_length = max_length
        self._buf = bytearray()
        self._pos = 0

    @property
    def pending(self) -> int:
        """Octets received but not yet returned in a frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received octets to the buffer.

        Args:
            data: the next chunk of the stream, of any size (empty is fine).
        """
        pos = self._pos
        if pos and pos >= _COMPACT_THRESHOLD and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """Take the next complete frame out of the buffer.

        Returns:
            One frame, header included, or None when more octets are needed.

        Raises:
            FramingError: the pending command_length is below 16 or above ``max_length``; the
                stream cannot be resynchronised, and every later call raises the same.
        """
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < 4:
            return None
        length = int.from_bytes(buf[pos : pos + 4], "big")
        if length < MIN_PDU_LENGTH or length > self.max_length:
            sequence = int.from_bytes(buf[pos + 12 : pos + 16], "big") if available >= 16 else None
            raise FramingError(
                f"command_length {length} is outside {MIN_PDU_LENGTH}..{self.max_length}",
                command_length=length,
                sequence=sequence,
            )
        if available < length:
            return None
        end = pos + length
        frame = bytes(buf[pos:end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return frame
