"""Settings of the Python runtime for a long-running daemon process.

The cyclic garbage collector's defaults suit short scripts. In the daemon they cost about a
tenth of its CPU (a young-generation pass every 700 net allocations of containers, and
each message allocates dozens) and, worse, pause everything for a full collection that walks
every object alive, the startup's modules and metadata included: pauses of up to 117 ms
were measured under a vote campaign, each one an MO acknowledged that much later.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

#: Young-generation threshold raised from 700: most of a message's objects die by reference
#: counting long before 10,000 net allocations; the older generations keep their ratios.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Collect once, move every object alive into the permanent generation (full collections
    no longer walk what startup made, which lives as long as the process), and raise the
    young-generation threshold. Call it once, after startup, in the daemon's own process:
    a process that starts gateways again and again (a test run) would keep each one's
    objects for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
