"""Python's cyclic garbage collector in a long-running gateway process.

Everything loaded by the time the gateway starts serving (modules, config, rules) lives as
long as the process: it is frozen out of the collector's scans. Parsing a webhook or running
a run allocates hundreds of objects that die young; with the default thresholds (a young
collection every 700 allocations) collections cost more than the parse (bench/ingest), and 7 %
of the CPU of each run (bench/drain: 627 collections, 0.45-0.5 s in 8,000 runs). Frozen before
`--processes` forks, the worker processes share those pages instead of copying them.

`gateway serve` settles the collector once started; the benches that run a gateway's parts in
their own process (bench/drain, bench/assistants, bench/thin) do the same through `settle`,
so they measure what a served gateway does.
"""

from __future__ import annotations

import gc

# A young collection after 50,000 allocations net of frees, a middle one every 20 of those,
# a full one every 100 middle ones (and only once the long-lived objects grew by a quarter).
THRESHOLDS = (50_000, 20, 100)


def settle() -> None:
    """Collect once, freeze what is left (it lives as long as the process), collect less
    often from here on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
