"""The SMSC simulator in a process of its own, for end-to-end tests that measure latency.

An operator's SMSC runs on another machine: a test that runs the simulator on the gateway's
own event loop charges the SMSC's work (answering every submit, sending every receipt) to
the gateway's latency. :class:`SmscProcess` starts ``python -m tests.system.smsc_process``,
which serves a :class:`~gatewayd.simulator.smsc.SmscSimulator` on a loopback port, and talks
to it over the child's stdin and stdout in JSON lines:

- the parent sends commands, each with an ``id``: ``mo`` (inject an MO; answered with the
  SMSC's statuses), ``wait_bound``, ``receipts`` (turn delivery receipts on or off), ``stats``;
- the child answers each command with the same ``id``, and reports every submit it accepted
  as ``{"to", "text", "at"}``: the destination, the decoded text and the time it was
  accepted, on the ``time.monotonic`` clock every process of the machine shares.

The child exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import attrs
import structlog
import trio

from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.pdus import Pdu, SubmitSm
from gatewayd.smpp.session import SessionConfig
from gatewayd.smpp.text import decode_short_message

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["SmscProcess", "Submit"]


@attrs.frozen
class Submit:
    """A submit as the SMSC accepted it: destination, decoded text, ``time.monotonic`` then."""

    to: str
    text: str
    at: float


class SmscProcess:
    """The parent's side: start the child, send it commands, hear of its submits.

    Args:
        on_submit: called in the parent's event loop with every submit the child accepted,
            in the order it accepted them.
        system_id, password, window, receipt_delay: as :class:`SmscSimulator`'s.
    """

    def __init__(
        self, on_submit: Callable[[Submit], None], *, system_id: str, password: str, window: int, receipt_delay: float
    ) -> None:
        self.on_submit = on_submit
        self._args = ["--system-id", system_id, "--password", password, "--window", str(window), "--receipt-delay", str(receipt_delay)]
        self._process: trio.Process | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._sending = trio.Lock()
        self.port: int | None = None

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the child until cancelled; ``task_status.started`` receives its port."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.system.smsc_process", *self._args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._process = process
        assert process.stdout is not None and process.stdin is not None
        try:
            async for message in _json_lines(process.stdout):
                if "at" in message:
                    self.on_submit(Submit(message["to"], message["text"], message["at"]))
                elif self.port is None:
                    self.port = int(message["port"])
                    task_status.started(self.port)
                else:
                    done, result = self._waiting.pop(message["id"])
                    result.append(message["result"])
                    done.set()
            raise RuntimeError(f"the simulator process exited ({await process.wait()})")
        finally:
            with trio.CancelScope(shield=True):
                await process.stdin.aclose()
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def _ask(self, op: str, **fields: Any) -> Any:
        assert self._process is not None and self._process.stdin is not None
        ident = next(self._ids)
        done, result = trio.Event(), []
        self._waiting[ident] = (done, result)
        async with self._sending:
            await self._process.stdin.send_all(json.dumps({"op": op, "id": ident, **fields}).encode() + b"\n")
        await done.wait()
        return result[0]

    async def inject_mo(self, source: str, destination: str, text: str) -> list[int]:
        """An MO from ``source`` to ``destination``; the statuses the gateway answered its parts with."""
        return list(await self._ask("mo", source=source, destination=destination, text=text))

    async def wait_bound(self) -> None:
        """Wait until the gateway has bound."""
        await self._ask("wait_bound")

    async def receipts(self, on: bool) -> None:
        """Send delivery receipts for the submits that ask for them (or stop sending them)."""
        await self._ask("receipts", on=on)

    async def stats(self) -> dict[str, int]:
        """The simulator's counters."""
        return dict(await self._ask("stats"))


async def _json_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[Any]:
    """The JSON values on ``stream``, one per line, until it closes."""
    buffer = b""
    while data := await stream.receive_some(1 << 16):
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield json.loads(line)


# -- the child ----------------------------------------------------------------------------------


class _Out:
    """Lines to stdout, written together once per turn of the child's event loop."""

    def __init__(self) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
        self._lines: list[bytes] = []
        self._ready = trio.Event()

    def put(self, message: dict[str, Any]) -> None:
        self._lines.append(json.dumps(message, separators=(",", ":")).encode())
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await trio.lowlevel.checkpoint()
            self._ready = trio.Event()
            lines, self._lines = self._lines, []
            await self._stream.send_all(b"\n".join(lines) + b"\n")


async def _child(args: argparse.Namespace) -> None:
    out = _Out()

    def on_submit(pdu: Pdu) -> None:
        assert isinstance(pdu, SubmitSm), pdu
        text = decode_short_message(pdu.short_message, pdu.data_coding)
        out.put({"to": pdu.destination_addr, "text": text, "at": time.monotonic()})

    simulator = SmscSimulator(
        system_id=args.system_id,
        password=args.password,
        session_config=SessionConfig(window=args.window),
        on_submit=on_submit,
        receipt_delay=args.receipt_delay,
    )

    async def answer(command: dict[str, Any]) -> None:
        op = command["op"]
        result: Any = None
        if op == "mo":
            result = [int(s) for s in await simulator.inject_mo(command["source"], command["destination"], command["text"])]
        elif op == "wait_bound":
            await simulator.wait_bound()
        elif op == "receipts":
            simulator.delivery_receipts = bool(command["on"])
        elif op == "stats":
            result = dict(simulator.stats)
        out.put({"id": command["id"], "result": result})

    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.run)
        port = await nursery.start(simulator.serve, "127.0.0.1", 0)
        out.put({"port": port})
        async for command in _json_lines(stdin):
            nursery.start_soon(answer, command)
        nursery.cancel_scope.cancel()


def main() -> None:
    """``python -m tests.system.smsc_process``: see the module's docstring."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--system-id", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--receipt-delay", type=float, default=0.0)
    # stdout carries the protocol: the simulator's own log lines go to stderr, warnings up.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr), wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    trio.run(_child, parser.parse_args())


if __name__ == "__main__":
    main()
