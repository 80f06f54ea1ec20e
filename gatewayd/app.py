"""The daemon's root: starts the SMSC links (and the simulator), drains on SIGTERM, reloads on SIGHUP.

Task tree::

    serve
    ├── signal watcher           SIGTERM/SIGINT -> drain; SIGHUP -> reload
    ├── simulator (optional)     the bundled SMSC, when no operator SMSC is configured
    │   └── demo MO feeder
    ├── outbind listener (optional)
    ├── operations               control socket, metrics endpoint, watchdog (gatewayd/ops.py)
    └── links nursery
        └── SmscLink per SMSC    one nursery per SMSC, one task per bind

A configuration is an immutable snapshot. A reload parses the file into a new snapshot;
when it is invalid the daemon keeps running on the old one and says why. Only the SMSCs
whose settings changed are re-bound.
"""

from __future__ import annotations

import datetime
import functools
import json
import random
import signal
import time
from typing import Any, Callable, Iterator

import attrs
import structlog
import trio

from gatewayd.binds import SmscLink
from gatewayd.campaigns import Campaigns
from gatewayd.outbound import Outbound
from gatewayd.privacy import read_policy, run_obligations
from gatewayd.config import ConfigError, GatewayConfig, SmscConfig, load_config
from gatewayd.dispatch import Decision, Dispatcher, MoProcessor
from gatewayd.ingest import Ingest, StoreAccept
from gatewayd import store_process
from gatewayd.logging import configure_logging
from gatewayd.notify import Notifier
from gatewayd.ops import Operations
from gatewayd.outbind import serve_outbind
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.outbox import Outbox
from gatewayd.runtime import tune_gc
from gatewayd.transport import ConnectionGone, ResponseTimeout
from profile_store.db import Store, StoreUnavailable
from profile_store.migrate import check_schema, current_revision, upgrade
from profile_store.mo import expire_incomplete

__all__ = ["Gateway", "serve", "prepare_store", "SIMULATOR_SMSC_NAME", "demo_messages", "simulator_smsc"]

log = structlog.get_logger("gatewayd.app")

#: The name of the SMSC link to the bundled simulator.
SIMULATOR_SMSC_NAME = "simulator"

_DEMO_TEXTS = ("VOTE GRE", "vote por", "ΨΗΦΟΣ GRE", "HELP", "QUIZ B", "Win tickets? " * 15, "STOP")


def simulator_smsc(config: GatewayConfig, port: int) -> SmscConfig:
    """The SMSC settings that bind the gateway to its bundled simulator."""
    sim = config.simulator
    return SmscConfig(
        name=SIMULATOR_SMSC_NAME,
        host=sim.host if sim.host not in ("0.0.0.0", "::") else "127.0.0.1",
        port=port,
        system_id=sim.system_id,
        password=sim.password,
        short_codes=(sim.short_code,),
        window=100,
        max_mt_per_second=1000.0,
        reconnect_delay=0.5,
        reconnect_max_delay=5.0,
    )


def demo_messages(config: GatewayConfig, rng: random.Random, mo_file_text: str | None = None) -> Iterator[tuple[str, str, str]]:
    """(source, short code, text) MOs for the demo: the lines of ``mo_file_text`` when given, else invented for ever."""
    sim = config.simulator
    if mo_file_text is not None:
        for number, line in enumerate(mo_file_text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                yield str(item["from"]), str(item.get("to", sim.short_code)), str(item["text"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("demo_mo_skipped", file=str(sim.mo_file), line=number, error=str(exc))
        return
    while True:
        yield f"3069{rng.randrange(10**8):08d}", sim.short_code, rng.choice(_DEMO_TEXTS)


def prepare_store(config: GatewayConfig) -> str:
    """Make sure the database is ready: a brand-new one gets the schema, any other must be current.

    Runs on a worker thread (it blocks).

    Returns:
        "initialised" or "current".

    Raises:
        SchemaMismatch: the database is behind (the message names the command to run) or ahead.
        StoreUnavailable: the database cannot be reached.
    """
    url = config.store.url
    if current_revision(url) is None and not _has_tables(url):
        upgrade(url)
        return "initialised"
    check_schema(url, config.path)
    return "current"


def _has_tables(url: str) -> bool:
    import sqlalchemy as sa

    from profile_store.db import make_engine

    engine = make_engine(url)
    try:
        return bool(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@attrs.define
class Gateway:
    """The running daemon: its current configuration snapshot and its SMSC links."""

    config: GatewayConfig
    ingest: Ingest
    store: Store | None = None
    dispatcher: Dispatcher | None = None
    outbox: Outbox | None = None
    links: dict[str, SmscLink] = attrs.Factory(dict)
    simulator: SmscSimulator | None = None
    _simulator_smsc: SmscConfig | None = None
    _links_nursery: trio.Nursery | None = None
    _stopping: trio.Event = attrs.Factory(trio.Event)
    # -- operations (gatewayd/ops.py): systemd notifications, control socket, metrics --
    #: Tells systemd about readiness, reloads and the drain (a no-op outside systemd).
    notifier: Notifier = attrs.Factory(Notifier.from_environment)
    #: Called with every SMSC link before it starts (metrics and status hooks).
    link_hooks: list[Callable[[SmscLink], None]] = attrs.Factory(list)
    #: The outcome of the last reload: ``at``, ``applied``, ``problems``; None before the first.
    last_reload: dict[str, Any] | None = None
    #: Set once the drain has finished.
    drained: trio.Event = attrs.Factory(trio.Event)
    #: The campaigns in force and their engine (None when serve() was given its own processor).
    campaigns: Campaigns | None = None
    #: The control socket, metrics and notifications of this gateway, once serve() started them.
    operations: Operations | None = None
    _reload_lock: trio.Lock = attrs.Factory(trio.Lock)

    def smscs(self, config: GatewayConfig) -> tuple[SmscConfig, ...]:
        """The SMSCs to bind to under ``config`` (the simulator's link included)."""
        extra = (self._simulator_smsc,) if self._simulator_smsc is not None and config.simulator_active else ()
        return (*config.smscs, *extra)

    async def _start_link(self, cfg: SmscConfig) -> None:
        assert self._links_nursery is not None
        handler = functools.partial(self.ingest.handle, smsc=cfg.name)
        link = SmscLink(cfg, handler)
        for hook in self.link_hooks:
            hook(link)
        self.links[cfg.name] = link
        self.ingest.short_codes[cfg.name] = frozenset(cfg.short_codes)
        await self._links_nursery.start(link.run)

    async def reload(self) -> bool:
        """Re-read the configuration file and apply it; keep the old one if it is invalid.

        Returns:
            True when the new configuration was applied.
        """
        if self.config.path is None:
            log.warning("config_reload_skipped", reason="running on built-in defaults, no file to re-read")
            self._reload_outcome(False, ["running on built-in defaults, no file to re-read"])
            return False
        try:
            new = await trio.to_thread.run_sync(load_config, self.config.path)
            if self.campaigns is not None:
                # The policy is part of the configuration: an invalid one fails the reload.
                await trio.to_thread.run_sync(read_policy, new)
        except ConfigError as exc:
            log.error("config_reload_failed", file=str(self.config.path), problems=[str(p) for p in exc.problems])
            self._reload_outcome(False, [str(p) for p in exc.problems])
            return False
        old_smscs = {s.name: s for s in self.smscs(self.config)}
        new_smscs = {s.name: s for s in self.smscs(new)}
        changed = [n for n in old_smscs if n in new_smscs and old_smscs[n] != new_smscs[n]]
        removed = [n for n in old_smscs if n not in new_smscs]
        added = [n for n in new_smscs if n not in old_smscs]
        async with trio.open_nursery() as nursery:
            for name in (*changed, *removed):
                nursery.start_soon(self.links.pop(name).stop, new.drain_timeout)
        for name in (*changed, *added):
            await self._start_link(new_smscs[name])
        if (new.log_level, new.log_format) != (self.config.log_level, self.config.log_format):
            configure_logging(new.log_level, new.log_format)
            self.store.configure_writer_logging(new.log_level, new.log_format)
        if new.simulator != self.config.simulator and self.simulator is not None:
            log.warning("simulator_settings_need_restart")
        self.config = new
        if self.campaigns is not None:
            await self.campaigns.reload(new)
        log.info("config_reloaded", rebound=sorted(changed), added=sorted(added), removed=sorted(removed))
        self._reload_outcome(True, [], rebound=sorted(changed), added=sorted(added), removed=sorted(removed))
        return True

    def _reload_outcome(self, applied: bool, problems: list[str], **changes: list[str]) -> None:
        at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.last_reload = {"at": at, "applied": applied, "problems": problems, **changes}

    async def reload_notifying(self) -> bool:
        """:meth:`reload` between RELOADING=1 and READY=1, one at a time (SIGHUP and ``gatewayd reload``)."""
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                return await self.reload()
            finally:
                self.notifier.ready()

    @property
    def reloading(self) -> bool:
        """True while a reload runs."""
        return self._reload_lock.locked()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (the drain runs or is about to)."""
        return self._stopping.is_set()

    async def drain(self) -> None:
        """Stop taking MTs, wait for outstanding responses (up to drain_timeout), unbind every SMSC."""
        log.info("drain_started", grace=self.config.drain_timeout)
        self.notifier.stopping()
        if self.outbox is not None:
            with trio.move_on_after(self.config.drain_timeout):
                await self.outbox.stop()
        async with trio.open_nursery() as nursery:
            for link in self.links.values():
                nursery.start_soon(link.stop, self.config.drain_timeout)
        log.info("drain_finished")
        self.drained.set()

    def request_stop(self) -> None:
        """Ask :func:`serve` to drain and return (what SIGTERM does)."""
        self._stopping.set()

    async def _watch_signals(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("signal_received", signal="SIGHUP")
                    await self.reload_notifying()
                else:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    self.request_stop()

    async def _expire_reassembly(self) -> None:
        """Every few seconds, process the concatenated MOs whose missing parts never came."""
        assert self.store is not None and self.dispatcher is not None
        while True:
            await trio.sleep(min(10.0, self.config.store.reassembly_timeout / 4))
            try:
                expired = await self.store.write(expire_incomplete, time.time(), older_than=self.config.store.reassembly_timeout)
            except StoreUnavailable as exc:
                log.warning("reassembly_sweep_failed", error=str(exc))
                continue
            for mo in expired:
                log.warning("mo_reassembly_expired", mo_id=mo.id, parts=mo.parts, smsc=mo.smsc)
                self.dispatcher.submit(mo)

    async def _run_obligations(self) -> None:
        """Run the privacy obligations at start and then every ``obligations_interval`` seconds."""
        assert self.store is not None and self.campaigns is not None
        while True:
            interval = self.config.privacy.obligations_interval
            privacy = self.campaigns.privacy
            if interval <= 0:
                return
            if privacy is not None:
                try:
                    await run_obligations(self.store, privacy, time.time())
                except StoreUnavailable as exc:
                    log.warning("obligation_failed", obligation="erase_idle", error=str(exc))
            await trio.sleep(interval)

    async def _feed_demo(self, simulator: SmscSimulator) -> None:
        rate = self.config.simulator.demo_mo_per_second
        if rate <= 0 and self.config.simulator.mo_file is None:
            return
        mo_file = self.config.simulator.mo_file
        text = None if mo_file is None else await trio.Path(mo_file).read_text(encoding="utf-8")
        await simulator.wait_bound()
        for source, destination, text in demo_messages(self.config, random.Random(), text):
            try:
                await simulator.inject_mo(source, destination, text)
            except (LookupError, ConnectionGone, ResponseTimeout) as exc:
                log.warning("demo_mo_not_delivered", error=str(exc))
                await simulator.wait_bound()
            if rate > 0:
                await trio.sleep(1.0 / rate)


def _not_ready(conn: object, mo: object, now: float) -> Decision:
    raise RuntimeError("MO processed before the campaigns were loaded")


async def serve(
    config: GatewayConfig,
    *,
    handle_signals: bool = True,
    processor: MoProcessor | None = None,
    own_process: bool = False,
    task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until SIGTERM/SIGINT (or :meth:`Gateway.request_stop`), then drain and return.

    MOs go to the campaigns of ``config`` (:class:`~gatewayd.campaigns.Campaigns`) unless
    ``processor`` decides about them instead. With ``own_process`` (``gatewayd run``), the
    process is the gateway's alone: once started, the garbage collector is tuned for it
    (:func:`gatewayd.runtime.tune_gc`).

    Raises:
        SchemaMismatch, StoreUnavailable: the database is not usable; nothing was started.
    """
    # 0700: the database and the control socket are the service user's alone.
    await trio.Path(config.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    outcome = await trio.to_thread.run_sync(prepare_store, config)
    if outcome == "initialised":
        log.info("store_initialised", url=config.store.url if "@" not in config.store.url else "(database)")
    writer = store_process.command(config.log_level, config.log_format) if config.store.writer_process else None
    store = Store.open(config.store.url, writer_command=writer)
    gateway = Gateway(config=config, ingest=Ingest(), store=store)
    gateway.outbox = Outbox(store, gateway.links, node=config.node, max_attempts=config.store.mt_max_attempts)
    if processor is None:
        gateway.campaigns = Campaigns(store, config)
    gateway.dispatcher = Dispatcher(
        store,
        processor or _not_ready,
        on_enqueued=gateway.outbox.wake_for_replies,
        claim_for=gateway.outbox.claim_for_hand_off,
        take_claimed=gateway.outbox.take_claimed,
    )
    gateway.ingest.accept = StoreAccept(
        store,
        settings=config.store,
        message_id_format=lambda name: gateway.links[name].cfg.message_id_format if name in gateway.links else "string",
        on_mo=gateway.dispatcher.submit,
        dispatcher=gateway.dispatcher,
    )
    try:
        async with trio.open_nursery() as root:
            await root.start(store.run_writer)
            if gateway.campaigns is not None:
                await gateway.campaigns.load()
                assert gateway.campaigns.engine is not None
                gateway.dispatcher.processor = gateway.campaigns.engine
                gateway.outbox.screen = gateway.campaigns.engine.screen
                store.keep_resident(gateway.campaigns.engine)
                root.start_soon(gateway.campaigns.watch, root)
                root.start_soon(gateway._run_obligations)
                root.start_soon(Outbound(store, gateway.campaigns, wake=gateway.outbox.wake).run)
            if handle_signals:
                await root.start(gateway._watch_signals)
            # The processor is final: MOs may be decided about in the unit that stores them.
            gateway.dispatcher.decide_on_store = True
            await root.start(gateway.dispatcher.run)
            await root.start(gateway.outbox.run)
            # Control socket, metrics, watchdog, STATUS= lines (gatewayd/ops.py).
            operations: Operations = await root.start(Operations(gateway).run)
            if gateway.campaigns is not None:
                operations.campaigns = gateway.campaigns.status
            root.start_soon(gateway._expire_reassembly)
            if config.simulator_active:
                sim = config.simulator
                gateway.simulator = SmscSimulator(system_id=sim.system_id, password=sim.password, delivery_receipts=sim.delivery_receipts)
                port = await root.start(gateway.simulator.serve, sim.host, sim.port)
                gateway._simulator_smsc = simulator_smsc(config, port)
                root.start_soon(gateway._feed_demo, gateway.simulator)
            if config.outbind is not None:
                handler = functools.partial(gateway.ingest.handle, smsc="outbind")
                await root.start(serve_outbind, config.outbind, handler)
            async with trio.open_nursery() as links:
                gateway._links_nursery = links
                for cfg in gateway.smscs(config):
                    await gateway._start_link(cfg)
                log.info(
                    "gateway_started",
                    smscs=[c.name for c in gateway.smscs(config)],
                    state_dir=str(config.state_dir),
                    config=str(config.path) if config.path else None,
                    node=config.node,
                )
                if own_process:
                    tune_gc()
                operations.ready()
                task_status.started(gateway)
                await gateway._stopping.wait()
                await gateway.drain()
                links.cancel_scope.cancel()
            root.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
    log.info("gateway_stopped")
