"""The store writer in a process of its own, so that its Python runs on another core.

In one process the event loop and the writer thread share one GIL: every message's
statements wait for the loop, and the loop for them. With ``Store(writer_command=...)``
the gateway keeps the lanes, the batching and the callers, and sends each batch to a child
process that runs it with a :class:`~profile_store.committer.Committer` and sends back each
unit's result or exception. A second batch may be sent while one runs: the child runs them
in order and goes from one straight into the next.

The wire: a socket pair, frames of a 4-byte length and two pickles. Units are pickled with
their function (a module-level function, by name) and arguments (frozen values; a plain
frozen attrs value goes as its class and its fields, both ways). An object
registered with :meth:`WriterProcess.keep_resident` (the campaign engine, a counter that
must keep its state between batches) is sent once, and again whenever its ``generation``
attribute changes; the units refer to the child's copy. A second socket pair carries the
"a subscriber's unit waits" signal that lets the child cut a long batch short.

Callers see what they would see with a writer thread, with one difference: a unit's
function and arguments must pickle (an unpicklable unit fails alone, with a TypeError)
and load in the child (a batch the child cannot load is sent again unit by unit, and a
unit that still cannot be loaded fails alone, with StoreUnavailable).
If the child dies, the batch in flight fails with StoreUnavailable (it may or may not have
been committed, as when a database connection dies during COMMIT) and the next batch
starts another child.
"""

from __future__ import annotations

import collections
import copyreg
import io
import operator
import pickle
import select
import signal
import socket
import struct
import subprocess
import types
import weakref
from typing import Any, Callable, Sequence

import attrs
import structlog
import trio

from profile_store.committer import Committer, StoreUnavailable, Unit

__all__ = ["WriterProcess", "serve"]

log = structlog.get_logger("profile_store.db")

_LENGTH = struct.Struct("!I")
_POKE = struct.Struct("!I")
#: Frames the parent sends: the first carries the database URL and settings.
_HELLO, _BATCH = 1, 2
#: In place of the count of units run: the child could not read the batch.
_UNREADABLE = -1


def _mappingproxy(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(mapping)


_DISPATCH = copyreg.dispatch_table.copy()
# Frozen configuration values hold read-only mappings, which pickle cannot copy by itself.
_DISPATCH[types.MappingProxyType] = lambda proxy: (_mappingproxy, (dict(proxy),))

#: The child's copies of resident objects, by key.
_RESIDENTS: dict[int, Any] = {}


def _resident(key: int) -> Any:
    try:
        return _RESIDENTS[key]
    except KeyError:
        raise LookupError(f"resident object {key} is not in the store writer process (its install could not be read)") from None


#: By class: how :func:`_by_fields` sends its instances, or None to leave them to pickle.
_FIELD_GETTERS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], bool] | None] = {}
#: By class, in the process that loads them: the constructor's keyword for each field.
_FIELD_KEYWORDS: dict[type, tuple[str, ...]] = {}


def _plain_value(cls: type) -> bool:
    """A frozen attrs class whose generated ``__init__`` stores each argument as given: no
    converter, validator or post-init hook would run again, and a frozen value cannot
    refer back to itself."""
    if not attrs.has(cls) or getattr(cls.__setattr__, "__name__", "") != "_frozen_setattrs":
        return False
    code = getattr(cls.__init__, "__code__", None)
    if code is None or not code.co_filename.startswith("<attrs generated"):
        return False
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        return False
    return all(f.init and f.converter is None and f.validator is None for f in attrs.fields(cls))


def _by_fields(obj: Any) -> Any:
    """Pickle a plain frozen value as its class and its fields, rebuilt by its constructor,
    or NotImplemented. attrs pickles a slotted class through a dict of its fields and a
    Python ``__setstate__``: for the values every MO, MT and receipt sends each way (a
    delivery receipt, say) that costs three times as much."""
    cls = type(obj)
    try:
        found = _FIELD_GETTERS[cls]
    except KeyError:
        found = None
        if _plain_value(cls):
            fields = attrs.fields(cls)
            names = [f.name for f in fields]
            get = operator.attrgetter(*names) if len(names) > 1 else (lambda o, n=names[0]: (getattr(o, n),))
            found = (get, any(f.kw_only for f in fields))
        _FIELD_GETTERS[cls] = found
    if found is None:
        return NotImplemented
    get, by_keyword = found
    values = get(obj)
    return (_construct, (cls, values)) if by_keyword else (cls, values)


def _construct(cls: type, values: tuple[Any, ...]) -> Any:
    """Rebuild a value sent by :func:`_by_fields` whose class takes keyword-only fields."""
    keywords = _FIELD_KEYWORDS.get(cls)
    if keywords is None:
        keywords = _FIELD_KEYWORDS[cls] = tuple(f.alias for f in attrs.fields(cls))
    return cls(**dict(zip(keywords, values)))


class _ValuePickler(pickle.Pickler):
    dispatch_table = _DISPATCH

    def reducer_override(self, obj: Any) -> Any:
        return _by_fields(obj)


class _UnitPickler(pickle.Pickler):
    """Pickles resident objects as a reference to the child's copy, noting which the child
    still needs, and plain values as :func:`_by_fields` does."""

    dispatch_table = _DISPATCH

    def __init__(self, file: io.BytesIO, residents: "_Residents") -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._by_id = residents.by_id
        self._residents = residents

    def reducer_override(self, obj: Any) -> Any:
        entry = self._by_id.get(id(obj))
        if entry is None or entry[1]() is not obj:
            return _by_fields(obj)
        self._residents.wanted(entry[0], obj)
        return _resident, (entry[0],)


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _ValuePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _frame(*parts: bytes) -> bytes:
    """A frame: its length, then each part with its own length."""
    body = b"".join(_LENGTH.pack(len(part)) + part for part in parts)
    return _LENGTH.pack(len(body)) + body


def _take_frame(buffer: bytearray) -> list[bytes] | None:
    """The parts of the first whole frame in ``buffer`` (removed from it), or None."""
    if len(buffer) < 4:
        return None
    (length,) = _LENGTH.unpack_from(buffer)
    if len(buffer) < 4 + length:
        return None
    parts, at, end = [], 4, 4 + length
    while at < end:
        (size,) = _LENGTH.unpack_from(buffer, at)
        parts.append(bytes(buffer[at + 4 : at + 4 + size]))
        at += 4 + size
    del buffer[:end]
    return parts


class _Residents:
    """The parent's register of resident objects, and what the child holds of them."""

    def __init__(self) -> None:
        #: id(obj) -> (key, weak reference)
        self.by_id: dict[int, tuple[int, weakref.ref[Any]]] = {}
        self._next_key = 1
        #: key -> generation the child holds
        self.installed: dict[int, int] = {}
        self.forgotten: list[int] = []
        self.installs: list[tuple[int, Any]] = []

    def add(self, obj: Any) -> None:
        if id(obj) in self.by_id:
            return
        key, self._next_key = self._next_key, self._next_key + 1
        self.by_id[id(obj)] = (key, weakref.ref(obj))
        weakref.finalize(obj, self._gone, id(obj), key)

    def _gone(self, ident: int, key: int) -> None:
        if self.by_id.get(ident, (None,))[0] == key:
            del self.by_id[ident]
        if self.installed.pop(key, None) is not None:
            self.forgotten.append(key)

    def wanted(self, key: int, obj: Any) -> None:
        generation = getattr(obj, "generation", 0)
        if self.installed.get(key) != generation:
            self.installed[key] = generation
            self.installs.append((key, obj))


@attrs.define
class _ChildUnit:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    first: bool
    result: Any = None
    error: BaseException | None = None


@attrs.define(eq=False)
class _Flight:
    """A batch sent to the child: the units sent (those that pickled), its number on the
    wire (0: nothing was sent), and once known, (units done, units that raised)."""

    batch: list[Unit]
    sent: list[Unit] = attrs.Factory(list)
    number: int = 0
    outcome: tuple[int, int] | None = None

    def settle(self, reply: tuple[int, int, Any]) -> None:
        ran, failed, outcomes = reply
        if ran == _UNREADABLE:
            ran, failed = self._unreadable(str(outcomes))
        else:
            for unit, (result, error) in zip(self.sent, outcomes):
                unit.result, unit.error = result, error
        batch = self.batch
        if len(self.sent) < len(batch):
            sent = set(map(id, self.sent))
            unsent = [unit for unit in batch if id(unit) not in sent]
            batch[:] = unsent + self.sent
            ran, failed = ran + len(unsent), failed + len(unsent)
        self.outcome = (ran, failed)

    def _unreadable(self, reason: str) -> tuple[int, int]:
        """The child could not read the units sent: one alone fails; several are given back,
        each to be sent again in a batch of its own (see ``Unit.alone``)."""
        if len(self.sent) == 1:
            (unit,) = self.sent
            unit.result, unit.error = None, StoreUnavailable(f"the store writer process cannot read this unit: {reason}")
            return 1, 1
        for unit in self.sent:
            unit.alone = True  # type: ignore[attr-defined]
        return 0, 0


class WriterProcess:
    """The parent's side: starts the child, sends it batches, and reads their outcomes.

    Args:
        url: the database URL (sent over the socket, never on a command line).
        command: how to start the child; it is given ``--fd N --poke-fd M`` and must call
            :func:`serve` with them (``gatewayd.store_process`` configures logging first).
        cut_after: as :class:`~profile_store.db.Store`'s.
    """

    def __init__(self, url: str, command: Sequence[str], *, cut_after: float) -> None:
        self.url = url
        self.command = list(command)
        self.cut_after = cut_after
        self._residents = _Residents()
        self._process: trio.Process | None = None
        self._stream: trio.SocketStream | None = None
        self._poke_socket: socket.socket | None = None
        self._buffer = bytearray()
        self._batches = 0
        self._flights: collections.deque[_Flight] = collections.deque()
        self._poked = False
        #: (level, format) for the child's logging, sent with the next batch when it changes.
        self.logging: tuple[str, str] | None = None
        self._logging_sent: tuple[str, str] | None = None

    def keep_resident(self, obj: Any) -> None:
        """Send ``obj`` to the child once (again when its ``generation`` changes), and let
        units refer to the child's copy: state a unit changes there stays there."""
        self._residents.add(obj)

    async def send(self, batch: list[Unit]) -> None:
        """Send ``batch`` to the child, behind the batches already in flight (the child runs
        them in order, so it goes from one straight into the next). Its outcome comes from
        :meth:`outcome`, in the order batches were sent."""
        flight = _Flight(batch)
        self._flights.append(flight)
        with trio.CancelScope(shield=True):
            try:
                if self._stream is None:
                    try:
                        await self._start()
                    except OSError as exc:
                        log.error("store_writer_lost", error=f"cannot start the store writer process: {exc!r}")
                        raise
                flight.sent, frame = self._encode(batch)
                if not flight.sent:
                    flight.outcome = (len(batch), len(batch))
                    return
                assert self._stream is not None
                self._batches += 1
                flight.number = self._batches
                self._poked = False
                await self._stream.send_all(frame)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                await self._lost(exc)

    @property
    def in_flight(self) -> int:
        """Batches sent whose outcome :meth:`outcome` has not returned yet."""
        return len(self._flights)

    async def outcome(self) -> tuple[list[Unit], int, int]:
        """Wait for the oldest batch in flight to be committed (or to fail); its units'
        outcomes are set.

        Returns:
            The batch, how many of its units are done (its first ones: a unit that does not
            pickle fails alone with a TypeError and is moved to the head), and how many of
            those raised.
        """
        flight = self._flights[0]
        with trio.CancelScope(shield=True):
            while flight.outcome is None:
                try:
                    reply = await self._receive_frame()
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, EOFError) as exc:
                    await self._lost(exc)
                    continue
                target = next(f for f in self._flights if f.outcome is None and f.number)
                target.settle(pickle.loads(reply))
        self._flights.popleft()
        assert flight.outcome is not None
        return flight.batch, *flight.outcome

    def poke(self) -> None:
        """A unit someone waits on has arrived: let the batches in flight be cut short."""
        if self._flights and not self._poked and self._poke_socket is not None:
            self._poked = True
            try:
                self._poke_socket.send(_POKE.pack(self._batches))
            except OSError:
                pass  # a full buffer holds a poke already; a dead child is found by send() or outcome()

    def _encode(self, batch: Sequence[Unit]) -> tuple[list[Unit], bytes]:
        """The batch frame, and the units it carries: a unit that does not pickle gets a
        TypeError and stays out."""
        residents = self._residents
        try:
            sent = list(batch)
            units = self._pickle_units(sent)
        except Exception:
            sent = []
            for unit in batch:
                try:
                    self._pickle_units([unit])
                except Exception as exc:
                    unit.result = None
                    unit.error = TypeError(f"a unit for the store writer process must pickle: {exc!r}")
                else:
                    sent.append(unit)
            units = self._pickle_units(sent)
        if not sent:
            return [], b""
        installs, residents.installs = residents.installs, []
        try:
            logging = self.logging if self.logging != self._logging_sent else None
            header = _dumps((_BATCH, self._batches + 1, installs, residents.forgotten, logging, self.cut_after))
        except Exception as exc:
            # An object the units refer to cannot be sent: none of them can run.
            for key, _obj in installs:
                residents.installed.pop(key, None)
            for unit in sent:
                unit.result = None
                unit.error = TypeError(f"an object kept in the store writer process must pickle: {exc!r}")
            return [], b""
        residents.forgotten = []
        self._logging_sent = self.logging
        return sent, _frame(header, units)

    def _pickle_units(self, units: Sequence[Unit]) -> bytes:
        buffer = io.BytesIO()
        _UnitPickler(buffer, self._residents).dump([(unit.fn, unit.args, unit.first) for unit in units])
        return buffer.getvalue()

    async def _start(self) -> None:
        parent, child = socket.socketpair()
        poke_parent, poke_child = socket.socketpair()
        try:
            self._process = await trio.lowlevel.open_process(
                [*self.command, "--fd", str(child.fileno()), "--poke-fd", str(poke_child.fileno())],
                pass_fds=(child.fileno(), poke_child.fileno()),
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            for s in (parent, child, poke_parent, poke_child):
                s.close()
            raise
        finally:
            child.close()
            poke_child.close()
        poke_parent.setblocking(False)
        self._poke_socket = poke_parent
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent))
        self._buffer.clear()
        self._residents.installed.clear()
        self._residents.forgotten.clear()
        # A new child logs as its command says until told otherwise.
        self._logging_sent = None
        await self._stream.send_all(_frame(_dumps((_HELLO, self.url))))

    async def _receive_frame(self) -> bytes:
        assert self._stream is not None
        buffer = self._buffer
        while True:
            frame = _take_frame(buffer)
            if frame is not None:
                return frame[0]
            data = await self._stream.receive_some(1 << 20)
            if not data:
                raise EOFError("the store writer process closed its socket")
            buffer += data

    async def _lost(self, exc: BaseException) -> None:
        """The child died or its socket broke: every batch in flight fails, and the next
        batch starts another child."""
        error = StoreUnavailable(f"the store writer process stopped: {exc!r}")
        for flight in self._flights:
            if flight.outcome is None:
                for unit in flight.batch:
                    unit.result, unit.error = None, error
                flight.outcome = (len(flight.batch), len(flight.batch))
        if self._stream is not None:
            log.error("store_writer_lost", error=repr(exc))
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the child: it commits nothing more, closes its connection and exits."""
        stream, self._stream = self._stream, None
        process, self._process = self._process, None
        poke, self._poke_socket = self._poke_socket, None
        with trio.CancelScope(shield=True):
            if stream is not None:
                await stream.aclose()
            if poke is not None:
                poke.close()
            if process is not None:
                # It exits when it sees its socket closed; one that hangs is killed.
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


# -- the child ----------------------------------------------------------------------------------


def serve(fd: int, poke_fd: int, configure_logging: Callable[[str, str], None] | None = None) -> None:
    """The child's main loop: run batches until the parent closes the socket.

    Args:
        fd, poke_fd: the sockets the parent passed.
        configure_logging: called with (level, format) when the gateway's logging changes.
    """
    from profile_store.db import make_engine

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # The gateway drains on these and then closes our socket; until then it still writes.
        signal.signal(signum, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    poke = socket.socket(fileno=poke_fd)
    poke.setblocking(False)
    reader = _BlockingFrames(sock)
    hello = reader.next()
    if hello is None:
        return
    kind, url = pickle.loads(hello[0])
    assert kind == _HELLO
    current = 0
    # The highest batch number poked: a unit someone waits on arrived when that batch had
    # been sent, so it and every batch before it may be cut short.
    poked = 0

    def urgent() -> bool:
        nonlocal poked
        if poked < current and select.select([poke], [], [], 0)[0]:
            try:
                data = poke.recv(4096)
            except BlockingIOError:
                data = b""
            poked = max([poked, *(n for (n,) in _POKE.iter_unpack(data[: len(data) // 4 * 4]))])
        return poked >= current

    committer = Committer(make_engine(url), cut_after=0.0, urgent=urgent)
    try:
        while True:
            frame = reader.next()
            if frame is None:
                return
            header, body = frame
            try:
                kind, current, installs, forgotten, logging, committer.cut_after = pickle.loads(header)
                if logging is not None and configure_logging is not None:
                    configure_logging(*logging)
                for key in forgotten:
                    _RESIDENTS.pop(key, None)
                for key, obj in installs:
                    _RESIDENTS[key] = obj
                units = [_ChildUnit(fn, args, first) for fn, args, first in pickle.loads(body)]
            except Exception as exc:
                # A unit (or an object it refers to) whose code this process cannot load: the
                # parent sends the batch's units again one by one, so it fails alone.
                log.error("store_batch_unreadable", error=repr(exc)[:500])
                sock.sendall(_frame(_dumps((_UNREADABLE, 0, repr(exc)[:500]))))
                continue
            if units and not units[0].first and urgent():
                # Bulk sent while another batch ran, before a unit someone waits on arrived:
                # that unit has waited for the other batch already. Giving this one back
                # before it begins costs no commit, and the unit goes next.
                sock.sendall(_reply(0, 0, []))
                continue
            ran, failed = committer.commit(units)
            sock.sendall(_reply(ran, failed, units[:ran]))
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        committer.drop_connection()
        committer.engine.dispose()


def _reply(ran: int, failed: int, units: list[_ChildUnit]) -> bytes:
    outcomes = [(unit.result, unit.error) for unit in units]
    try:
        body = _dumps((ran, failed, outcomes))
    except Exception:
        body = _dumps((ran, failed, [_picklable(outcome) for outcome in outcomes]))
    return _frame(body)


def _picklable(outcome: tuple[Any, BaseException | None]) -> tuple[Any, BaseException | None]:
    try:
        _dumps(outcome)
        return outcome
    except Exception as exc:
        result, error = outcome
        what = f"{type(error).__name__}: {error}" if error is not None else f"a {type(result).__name__} result ({exc!r})"
        log.error("store_outcome_not_returned", what=what[:500])
        return None, StoreUnavailable(f"the store writer process could not return {what}"[:500])


class _BlockingFrames:
    """Frames from the parent, as their parts, or None once the socket is closed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def next(self) -> list[bytes] | None:
        buffer = self._buffer
        while True:
            frame = _take_frame(buffer)
            if frame is not None:
                return frame
            try:
                data = self._sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not data:
                return None
            buffer += data
