"""The daemon's runtime settings: the garbage collector tuned once the gateway has started."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import gatewayd.app
from gatewayd.app import Gateway, serve
from gatewayd.config import default_config
from gatewayd.runtime import GC_THRESHOLDS


def test_tune_gc_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    """In a process of its own (freezing this one would keep every test's objects): after
    tune_gc the objects alive are in the permanent generation and the thresholds are ours."""
    script = (
        "import gc\n"
        "from gatewayd.runtime import tune_gc\n"
        "kept = [[n] for n in range(1000)]\n"
        "assert gc.get_freeze_count() == 0\n"
        "tune_gc()\n"
        "print(gc.get_freeze_count(), *gc.get_threshold())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    frozen, *thresholds = map(int, out.stdout.split())
    assert frozen >= 1000
    assert tuple(thresholds) == GC_THRESHOLDS


@pytest.mark.parametrize("own_process", [False, True])
async def test_serve_tunes_the_collector_only_in_its_own_process(
    own_process: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery
) -> None:
    """``gatewayd run`` tunes the collector once started; a gateway served inside another
    program (a test, a bench) leaves that program's collector alone."""
    calls: list[str] = []
    monkeypatch.setattr(gatewayd.app, "tune_gc", lambda: calls.append("tuned"))
    config = default_config(state_dir=tmp_path)
    gateway: Gateway = await nursery.start(functools.partial(serve, config, handle_signals=False, own_process=own_process))
    assert calls == (["tuned"] if own_process else [])
    gateway.request_stop()
