"""The outbind listener: SMSCs that deliver MOs by calling us (SMPP 3.4 section 2.2.1).

An SMSC connects, sends ``outbind`` with a system_id and password; when they match the
``[outbind]`` settings we answer by binding as a receiver on the same connection, with the
same credentials, and from then on the connection is served like any receiver bind.
Anything else (a wrong password, another PDU first, silence) closes the connection with a
log line.
"""

from __future__ import annotations

import functools

import structlog
import trio

from gatewayd.binds import RequestHandler, serve_requests
from gatewayd.config import OutbindConfig
from gatewayd.smpp.constants import BindMode
from gatewayd.smpp.pdus import Bind, Outbind
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Role
from gatewayd.transport import BindFailed, SmppConnection

__all__ = ["OUTBIND_TIMEOUT", "serve_outbind", "handle_outbind"]

log = structlog.get_logger("gatewayd.outbind")

#: Seconds a new connection has to send its outbind.
OUTBIND_TIMEOUT = 10.0


async def handle_outbind(stream: trio.abc.Stream, cfg: OutbindConfig, handler: RequestHandler, *, peer: str = "") -> None:
    """Serve one connection from an SMSC that should start with outbind."""
    conn = SmppConnection(stream, SmppSession(Role.ESME, SessionConfig(), now=trio.current_time()), name=f"outbind:{peer}")
    with structlog.contextvars.bound_contextvars(smsc=conn.name, bind="receiver"):
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            first = None
            with trio.move_on_after(OUTBIND_TIMEOUT):
                try:
                    first = await conn.requests.receive()
                except trio.EndOfChannel:
                    pass
            if not isinstance(first, Outbind):
                log.warning("outbind_refused", reason="no outbind received")
                conn.abort("no outbind")
                return
            if first.system_id != cfg.system_id or first.password != cfg.password:
                log.warning("outbind_refused", reason="wrong system_id or password")
                conn.abort("outbind refused")
                return
            try:
                await conn.bind(Bind(mode=BindMode.RECEIVER, system_id=cfg.system_id, password=cfg.password))
            except BindFailed as exc:
                log.error("bind_rejected", reason=str(exc))
                conn.abort("bind failed")
                return
            log.info("bind_established", via="outbind")
            await serve_requests(conn, handler)
            log.info("bind_closed", reason=conn.close_reason)


async def serve_outbind(cfg: OutbindConfig, handler: RequestHandler, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen for outbinds until cancelled; ``task_status.started`` receives the port."""

    async def on_connect(stream: trio.SocketStream) -> None:
        host, port = stream.socket.getpeername()[:2]
        await handle_outbind(stream, cfg, handler, peer=f"{host}:{port}")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, on_connect, cfg.port, host=cfg.host))
        port = listeners[0].socket.getsockname()[1]
        log.info("outbind_listening", host=cfg.host, port=port)
        task_status.started(port)
