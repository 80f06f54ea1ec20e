"""Sequence numbers and the window of requests awaiting a response.

Every request we send gets a sequence number in 1..0x7FFFFFFF that is unique among the
requests still outstanding, and a deadline. Message requests (submit_sm, data_sm, deliver_sm)
count against the window the peer allows; link-control requests (bind, unbind, enquire_link)
are tracked the same way but never blocked by it, so a full window cannot stop keep-alives
or a clean unbind.

Deadlines are ``now + timeout`` with a clock that never goes back, so with one timeout per kind
insertion order is deadline order: each kind keeps a dict in deadline order and the earliest
deadline is its first entry. Adding, completing and expiring are all O(1); only a request
whose timeout is shorter than those before it of its kind (a bind after an enquire_link)
costs a re-sort of its few link-control neighbours.
"""

from __future__ import annotations

from typing import Iterator

import attrs

from gatewayd.smpp.errors import LocalProtocolError, WindowFull
from gatewayd.smpp.pdus import Pdu

__all__ = ["MAX_SEQUENCE", "Sequencer", "Outstanding", "Window"]

#: The largest sequence_number SMPP 3.4 allows.
MAX_SEQUENCE = 0x7FFFFFFF


class Sequencer:
    """Hands out sequence numbers 1..0x7FFFFFFF, wrapping to 1 after the last."""

    def __init__(self, start: int = 1) -> None:
        if not 1 <= start <= MAX_SEQUENCE:
            raise ValueError(f"start must be in 1..{MAX_SEQUENCE}, got {start}")
        self._next = start

    def next(self) -> int:
        """Return the next number and advance."""
        value = self._next
        self._next = 1 if value == MAX_SEQUENCE else value + 1
        return value


@attrs.frozen
class Outstanding:
    """A request on the wire, waiting for its response."""

    request: Pdu
    sent_at: float
    deadline: float


class Window:
    """Outstanding requests by sequence number, with their deadlines.

    Args:
        size: how many message requests may be outstanding at once (>= 1).
        sequencer: where sequence numbers come from; a fresh one by default.
    """

    def __init__(self, size: int, sequencer: Sequencer | None = None) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.size = size
        self._sequencer = sequencer or Sequencer()
        self._messages: dict[int, Outstanding] = {}
        self._control: dict[int, Outstanding] = {}

    def __len__(self) -> int:
        return len(self._messages) + len(self._control)

    @property
    def in_flight(self) -> int:
        """How many message requests are outstanding."""
        return len(self._messages)

    @property
    def has_room(self) -> bool:
        """True when another message request may be sent now."""
        return len(self._messages) < self.size

    def allocate(self) -> int:
        """A sequence number not used by any outstanding request.

        Raises:
            LocalProtocolError: every number is in use (cannot happen with sane windows).
        """
        for _ in range(len(self) + 1):
            seq = self._sequencer.next()
            if seq not in self._messages and seq not in self._control:
                return seq
        raise LocalProtocolError("no free sequence number")  # pragma: no cover - needs 2**31 requests

    def add(self, request: Pdu, now: float, timeout: float, *, counted: bool) -> None:
        """Record a request just sent.

        Args:
            request: the request, with its sequence number set.
            now: the current time.
            timeout: seconds to wait for its response.
            counted: True for message requests, which the window limits.

        Raises:
            WindowFull: ``counted`` and the window has no room.
            LocalProtocolError: the sequence number is already outstanding.
        """
        seq = request.sequence
        if seq in self._messages or seq in self._control:
            raise LocalProtocolError(f"sequence {seq} is already outstanding")
        if counted and len(self._messages) >= self.size:
            raise WindowFull(f"{len(self._messages)} requests outstanding, window is {self.size}")
        table = self._messages if counted else self._control
        entry = Outstanding(request, now, now + timeout)
        out_of_order = bool(table) and table[next(reversed(table))].deadline > entry.deadline
        table[seq] = entry
        if out_of_order:
            # A shorter timeout than the requests before it (a bind among link-control
            # requests): restore deadline order, which the O(1) expiry relies on.
            ordered = sorted(table.items(), key=lambda item: item[1].deadline)
            table.clear()
            table.update(ordered)

    def pop(self, sequence: int) -> Outstanding | None:
        """Remove and return the request with this sequence number, if outstanding."""
        found = self._messages.pop(sequence, None)
        if found is None:
            found = self._control.pop(sequence, None)
        return found

    def next_deadline(self) -> float | None:
        """The earliest deadline among outstanding requests, or None."""
        deadlines = [d[next(iter(d))].deadline for d in (self._messages, self._control) if d]
        return min(deadlines) if deadlines else None

    def pop_expired(self, now: float) -> list[Outstanding]:
        """Remove and return every request whose deadline is at or before ``now``, oldest first."""
        expired: list[Outstanding] = []
        for table in (self._messages, self._control):
            while table:
                seq = next(iter(table))
                if table[seq].deadline > now:
                    break
                expired.append(table.pop(seq))
        expired.sort(key=lambda o: o.deadline)
        return expired

    def drain(self) -> list[Outstanding]:
        """Remove and return every outstanding request (the connection is gone)."""
        everything = [*self._messages.values(), *self._control.values()]
        self._messages.clear()
        self._control.clear()
        return everything

    def __iter__(self) -> Iterator[Outstanding]:
        yield from self._messages.values()
        yield from self._control.values()
