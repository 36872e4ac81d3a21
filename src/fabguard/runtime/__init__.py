"""Process settings for FabGuard's long-running processes (the server and its workers, the demo, catch-up),
and (``fabguard.runtime.workers``) the server's background workers.

Only what a process that ingests test records at line rate needs and a library must not impose on its
host: each entry point that owns its process calls ``tune_gc()`` once at start.
"""

from __future__ import annotations

import gc

# Container allocations (net) between young-generation collections; Python's default is 700.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Run the cyclic garbage collector less often.

    A batch upload of 200 OpenHTF records builds about 10,000 dicts and lists that all stay alive until
    the batch is stored, and the analytics fold builds as many per batch of events. At the default
    threshold the collector runs every few records, finds nothing to free, promotes them all and soon
    rescans the whole heap: a third of the upload's time (4,400 -> 5,500 records/s stored in process,
    ``bench/ingest.py``). Reference counting still frees everything that is not in a cycle at once; the
    rarer collections only let cyclic garbage wait longer.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
