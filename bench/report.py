#!/usr/bin/env python3
"""Run bench/ingest, bench/drain and bench/assistants; write one markdown table of results.

The table (ratios against the baselines each bench measures in the same run, p50/p99, RSS)
replaces the section between the `bench/report` markers in docs/benchmarks.md, which the
README links, and is printed. The machine it ran on is named under the table.

Usage:  bench/report [--quick]     (--quick: shorter runs, for a smoke check)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PAGE = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench/report:begin -->", "<!-- bench/report:end -->"


def run(script: str, *args: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        target = Path(out.name)
    command = [sys.executable, str(BENCH / f"{script}.py"), *args, "--json", str(target)]
    print("$", " ".join(command[1:]), file=sys.stderr)
    subprocess.run(command, check=False, stdout=sys.stderr)
    try:
        result: dict[str, Any] = json.loads(target.read_text())
        return result
    except ValueError:
        return {}
    finally:
        target.unlink(missing_ok=True)


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def verdict(met: bool) -> str:
    return "yes" if met else "no"


def table(ingest: dict[str, Any], drain: dict[str, Any], assistants: dict[str, Any]) -> str:
    rows = ["| bench | what | result | target | met |", "|---|---|---|---|---|"]
    if ingest.get("results"):
        bare, gw = ingest["results"]["bare"], ingest["results"]["gateway"]
        ratio = gw["rps"] / bare["rps"]
        p99 = gw["latency_us"]["p99"] / 1000
        rows.append(
            f"| `bench/ingest` | verified, durable ingest of a "
            f"{ingest['load']['body_bytes']:,}-byte "
            f"Shopify order, {ingest['load']['connections']} connections, vs a bare Starlette "
            f"endpoint | {ratio:.2f}x ({gw['rps']:,.0f} vs {bare['rps']:,.0f} req/s), p50 "
            f"{gw['latency_us']['p50'] / 1000:.1f} ms, p99 {p99:.1f} ms, peak RSS "
            f"{gw['peak_rss_mb']:.0f} MB | ≥ 0.35x, p99 ≤ 15 ms "
            f"| {verdict(ratio >= 0.35 and p99 <= 15)} |"
        )
    pg = (ingest.get("results") or {}).get("gateway-postgresql")
    if pg:
        sqlite = ingest["results"]["gateway"]
        ratio = pg["rps"] / sqlite["rps"]
        rows.append(
            f"| `bench/ingest --store both` | the same on PostgreSQL (asyncpg, one replica) vs "
            f"SQLite, same run | {ratio:.2f}x of SQLite ({pg['rps']:,.0f} req/s), p99 "
            f"{pg['latency_us']['p99'] / 1000:.1f} ms | ≥ 0.8x of SQLite "
            f"| {verdict(ratio >= 0.8)} |"
        )
    scaling = (ingest.get("targets") or {}).get("replica_scaling")
    if scaling:
        count = scaling["replicas"]
        one = ingest["results"]["postgresql-1-behind-haproxy"]
        many = ingest["results"][f"postgresql-{count}-behind-haproxy"]
        rows.append(
            f"| `bench/ingest --replicas {count}` | 1 vs {count} PostgreSQL replicas behind a "
            f"loopback haproxy, same run | {scaling['value']:.2f}x ({many['rps']:,.0f} vs "
            f"{one['rps']:,.0f} req/s); machine busy {many['cpu_cores']['machine_busy']:.2f} of "
            f"{ingest['machine']['nproc']} cores | reported (the limit of one machine) | — |"
        )
    if drain.get("drain"):
        d, idle = drain["drain"], drain["latency"]["after_202"]
        rows.append(
            f"| `bench/drain` | {d['events']:,} stored events through a `log.record` rule; idle "
            f"202 → handler latency | {d['events_per_s']:,.0f} events/s ({drain['ratio']:.3f}x of "
            f"direct calls), p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms | ≥ 2,000 events/s, "
            f"p50 ≤ 5 ms | {verdict(d['events_per_s'] >= 2000 and idle['p50_ms'] <= 5)} |"
        )
    if assistants:
        a = assistants
        rows.append(
            f"| `bench/assistants` | {a['runs']:,} runs, two {a['latency_s'] * 1000:.0f} ms model "
            f"turns each, concurrency {a['concurrency']}, vs the ideal | {a['ratio_to_ideal']}x "
            f"({a['elapsed_s']} s vs {a['ideal_s']} s), RSS {a['rss_first_quarter_mb']} → "
            f"{a['rss_last_quarter_mb']} MB | ≤ 1.2x, memory flat "
            f"| {verdict(a['ratio_to_ideal'] <= 1.2)} |"
        )
    machine = (
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} CPU(s), {cpu()}, "
        f"Python {platform.python_version()}, Linux {platform.release()}."
    )
    return "\n".join(rows) + "\n\n" + machine + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    ingest = run(
        "ingest", "--store", "both", "--replicas", "2", "--duration", "3" if quick else "10"
    )
    drain = run(
        "drain", "--events", "2000" if quick else "10000", "--samples", "50" if quick else "200"
    )
    assistants = run("assistants", "--runs", "200" if quick else "1000", "--concurrency", "16")
    result = table(ingest, drain, assistants)
    print(result)
    text = PAGE.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        PAGE.write_text(f"{head}{BEGIN}\n\n{result}\n{END}{tail}")
        print(f"updated {PAGE.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
