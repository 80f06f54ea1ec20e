"""The control socket: ``gatewayd status``, ``reload`` and ``drain`` talk to the running daemon.

A Unix stream socket, by default ``control.sock`` in the state directory, created with mode
0600 by the daemon's user, so only that user (and root) can connect; a directory the daemon
creates for it gets mode 0700. The protocol is newline-delimited JSON, one request and one
response per line, several per connection if the client likes::

    -> {"command": "status"}
    <- {"ok": true, "command": "status", "result": {...}}
    -> {"command": "reload"}
    <- {"ok": false, "command": "reload", "error": "...", "result": {...}}

:class:`ControlServer` knows nothing of the gateway: it is given one coroutine function per
command. :func:`request` is the client the CLI uses (plain blocking sockets, no trio).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
import trio

from gatewayd.errors import GatewayError

__all__ = [
    "COMMANDS",
    "ControlServer",
    "ControlError",
    "ControlUnavailable",
    "request",
    "socket_path_for_file",
    "MAX_LINE",
]

log = structlog.get_logger("gatewayd.control")

#: The commands the daemon answers.
COMMANDS = ("status", "reload", "drain")
#: The longest request or response line, in bytes.
MAX_LINE = 1 << 20
#: Seconds a connection may stay silent before it is closed.
IDLE_TIMEOUT = 60.0
#: Connections served at once.
MAX_CONNECTIONS = 8
# AF_UNIX paths are limited to 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107

#: One command's implementation: returns its result (a JSON-able mapping). A result with
#: ``"ok": False`` is passed on as a failed command (its ``"error"`` as the message).
Handler = Callable[[], Awaitable[Mapping[str, Any]]]


class ControlError(GatewayError):
    """The control socket cannot be created (in use by another daemon, not a socket, ...)."""


class ControlUnavailable(GatewayError):
    """The client cannot talk to the daemon; the message says why and what to do."""


class _ShortPath:
    """A path usable with AF_UNIX even when longer than 107 bytes.

    A long path is reached as ``/proc/self/fd/N/name`` through a descriptor of its
    directory, as systemd does. Use as a context manager; the descriptor is closed on exit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> str:
        text = os.fspath(self.path)
        if len(os.fsencode(text)) <= _SUN_PATH_MAX:
            return text
        self._fd = os.open(self.path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        short = f"/proc/self/fd/{self._fd}/{self.path.name}"
        if len(os.fsencode(short)) > _SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "socket file name too long", text)
        return short

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _is_listening(path: Path) -> bool:
    """True when something accepts connections on the socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(2.0)
    try:
        with _ShortPath(path) as address:
            probe.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        # Cannot tell (e.g. timed out: a daemon too busy to accept): assume it is alive.
        return True
    finally:
        probe.close()
    return True


def bind_socket(path: Path) -> socket.socket:
    """A listening socket at ``path``, mode 0600; a stale socket file left by a crash is replaced.

    Raises:
        ControlError: another daemon listens there, or the path is something else than a socket.
        OSError: the directory cannot be created or written.
    """
    if not path.parent.exists():
        # Only a directory we create gets 0700; an existing one (the state directory, whose
        # mode the unit sets) is left as it is.
        path.parent.mkdir(parents=True, mode=0o700)
    try:
        info = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{path} exists and is not a socket; remove it or set [control] socket")
        if _is_listening(path):
            raise ControlError(f"another process listens on {path} (is another gatewayd running on this state directory?)")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # On Linux the mode of the socket's inode at bind() comes from the descriptor, so the
        # file never exists with a wider mode; the chmod after covers other systems.
        os.fchmod(sock.fileno(), 0o600)
        with _ShortPath(path) as address:
            sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    """Serves the control commands on a Unix socket.

    Args:
        path: where the socket goes.
        status, reload, drain: the commands (see :data:`Handler`).
    """

    def __init__(self, path: Path, *, status: Handler, reload: Handler, drain: Handler) -> None:
        self.path = path
        self.handlers: dict[str, Handler] = {"status": status, "reload": reload, "drain": drain}
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def serve(self, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, then remove the socket file.

        Raises:
            ControlError, OSError: as :func:`bind_socket`.
        """
        sock = bind_socket(self.path)
        inode = os.stat(self.path).st_ino
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        log.info("control_listening", path=str(self.path))
        try:
            task_status.started(self.path)
            await trio.serve_listeners(self._handle, [listener])
        finally:
            listener.socket.close()
            try:
                # Only our own socket: a daemon started after us may have replaced it.
                if os.stat(self.path).st_ino == inode:
                    os.unlink(self.path)
            except OSError:
                pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with self._limiter:
            try:
                buffer = bytearray()
                while True:
                    line: bytes | None = None
                    with trio.move_on_after(IDLE_TIMEOUT):
                        line, buffer = await _read_line(stream, buffer)
                    if line is None:
                        return
                    response = await self._answer(line)
                    data = json.dumps(response, separators=(",", ":"), default=str).encode() + b"\n"
                    # The answer to drain comes as the daemon stops: send it even then.
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            except _LineTooLong:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await stream.send_all(b'{"ok":false,"error":"request too long"}\n')
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            finally:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
            command = message["command"] if isinstance(message, dict) else None
        except (ValueError, KeyError):
            return {"ok": False, "error": 'expected a JSON object such as {"command": "status"}'}
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}; expected one of: {', '.join(COMMANDS)}"}
        if command != "status":
            log.info("control_command", command=command)
        try:
            result = dict(await handler())
        except Exception as exc:
            log.exception("control_command_failed", command=command)
            return {"ok": False, "command": command, "error": f"internal error: {type(exc).__name__}: {exc}"}
        ok = bool(result.pop("ok", True))
        response: dict[str, Any] = {"ok": ok, "command": command, "result": result}
        if not ok:
            response["error"] = str(result.get("error", f"{command} failed"))
        return response


class _LineTooLong(Exception):
    pass


async def _read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> tuple[bytes | None, bytearray]:
    """The next line (without its newline) and what followed it; None at end of stream."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            return bytes(buffer[:end]), buffer[end + 1 :]
        if len(buffer) > MAX_LINE:
            raise _LineTooLong()
        data = await stream.receive_some(65536)
        if not data:
            return None, buffer
        buffer += data


# --- the client ----------------------------------------------------------------------------


def request(path: Path, command: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Send one command to the daemon listening on ``path`` and return its response.

    Returns:
        The response object: ``ok``, ``command``, ``result`` and, when not ok, ``error``.

    Raises:
        ControlUnavailable: no daemon listens there, the socket may not be opened by this
            user, or the daemon did not answer in time; the message says which.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            with _ShortPath(path) as address:
                sock.connect(address)
        except FileNotFoundError:
            raise ControlUnavailable(
                f"{path}: no such socket; gatewayd is not running with this configuration"
                " (`systemctl status gatewayd`), or give its socket with --socket"
            ) from None
        except ConnectionRefusedError:
            raise ControlUnavailable(f"{path}: nobody listens on this socket; gatewayd is not running (a stale socket file)") from None
        except PermissionError:
            raise ControlUnavailable(
                f"{path}: permission denied; run this as the service user (sudo -u gatewayd gatewayd ...) or as root"
            ) from None
        except OSError as exc:
            raise ControlUnavailable(f"{path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = bytearray()
            while b"\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_LINE:
                    break
        except TimeoutError:
            raise ControlUnavailable(f"{path}: gatewayd did not answer {command!r} within {timeout:g} s") from None
        except OSError as exc:
            raise ControlUnavailable(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    line = bytes(data).split(b"\n", 1)[0]
    if not line:
        raise ControlUnavailable(f"{path}: gatewayd closed the connection without answering {command!r}")
    try:
        response = json.loads(line)
    except ValueError:
        raise ControlUnavailable(f"{path}: the answer is not JSON: {line[:80]!r}") from None
    if not isinstance(response, dict):
        raise ControlUnavailable(f"{path}: unexpected answer: {line[:80]!r}")
    return response


def socket_path_for_file(config_file: Path | None) -> Path | None:
    """The control socket a configuration file names, read leniently.

    Used when the file does not validate (say, after an edit that a reload should report):
    only ``[control]`` and ``[gateway] state_dir`` are looked at. None when even that is not
    possible (unreadable file, broken TOML, control disabled).
    """
    if config_file is None:
        return Path(os.path.abspath("state")) / "control.sock"
    base = Path(os.path.abspath(config_file)).parent
    try:
        with open(config_file, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    control = data.get("control", {})
    gateway = data.get("gateway", {})
    if not isinstance(control, dict) or not isinstance(gateway, dict) or control.get("enabled", True) is False:
        return None
    if isinstance(control.get("socket"), str) and control["socket"]:
        return Path(os.path.abspath(base / Path(control["socket"]).expanduser()))
    state = gateway.get("state_dir", "state")
    if not isinstance(state, str) or not state:
        return None
    return Path(os.path.abspath(base / Path(state).expanduser())) / "control.sock"
