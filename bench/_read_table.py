"""The read-side benchmark's markdown table (bench/read_side.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _read_common import TARGETS
from _stack import (
    markdown_table,
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(d: dict[str, Any]) -> str:
    rb, raw, api = d["rebuild"], d["raw_consume"], d["api"]
    lat = d["latency"]["command_to_read_model"]
    k = d["latency"]["raw_kafka"]["produce_to_consume"]
    t = d["latency"]["raw_kafka"]["transactional_hop"]["produce_to_consume"]
    ph = d["latency"]["raw_kafka"]["plain_hop"]["produce_to_consume"]
    c2r = lat["command_to_read_model"]
    rate = lat["rate_target_per_s"]
    st = lat["stages"]

    def pair(x: dict[str, float]) -> str:
        return f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f}"

    rows: list[list[Any]] = [
        [
            f"replay (rebuild + chains + swap) records/s ({rb['rebuild_records']} records)",
            rb["rebuild_records_per_s"],
            "raw read_committed consumer records/s",
            raw["records_per_s"],
            d["rebuild_ratio"],
            f">= {TARGETS['rebuild']}",
            verdict(d["rebuild_ratio"] >= TARGETS["rebuild"]),
        ],
        [
            "replay --verify (+ both digests) records/s",
            rb["records_per_s"],
            "raw read_committed consumer records/s",
            raw["records_per_s"],
            d["verified_rebuild_ratio"],
            "info",
            "",
        ],
        [
            "rebuild floor records/s: COPY every record + insert the audit rows, nothing else",
            d["rebuild_floor"]["records_per_s"],
            "raw read_committed consumer records/s",
            raw["records_per_s"],
            d["rebuild_floor_ratio"],
            "info",
            "",
        ],
        [
            f"command -> read model p99 ms @ {rate:.0f}/s",
            c2r["p99_ms"],
            "raw Kafka produce -> consume p99 ms",
            k["p99_ms"],
            d["latency_ratio"],
            f"<= {TARGETS['latency']}",
            verdict(d["latency_ratio"] <= TARGETS["latency"]),
        ],
        [
            "  stage: command sent -> event built by the handler, p50 / p99 ms",
            pair(st["command_to_event_created_by_handler"]),
            "stage: event built -> readable on Kafka (store commit + relay), p50 / p99 ms",
            pair(st["event_created_to_event_on_kafka"]),
            "",
            "info",
            "",
        ],
        [
            "  stage: event readable on Kafka -> in the read model (projector), p50 / p99 ms",
            pair(st["event_on_kafka_to_read_model"]),
            "(for comparison) command sent -> result readable on Kafka, p50 / p99 ms",
            pair(st["command_to_result_on_kafka"]),
            "",
            "info",
            "",
        ],
        [
            f"one transactional hop (produce + commit -> read_committed) p99 ms @ {rate:.0f}/s",
            t["p99_ms"],
            "plain hop p99 ms, measured just before it",
            ph["p99_ms"],
            t["p99_ms"] / ph["p99_ms"],
            "info",
            "",
        ],
        [
            f"command -> read model p50 ms @ {rate:.0f}/s",
            c2r["p50_ms"],
            "raw Kafka produce -> consume p50 ms",
            k["p50_ms"],
            d["latency_ratio_p50"],
            "info",
            "",
        ],
    ]
    for i, (client, ratio) in enumerate(d["api_ratio"].items()):
        a = api[client]
        rows[3 + 3 * i : 3 + 3 * i] = [
            [
                f"GET /models/{{name}} req/s ({client} client, c={api['concurrency']})",
                a["model"]["req_per_s"],
                "GET /health req/s (same server, same client)",
                a["health"]["req_per_s"],
                ratio,
                f">= {TARGETS['api']}",
                verdict(ratio >= TARGETS["api"]),
            ],
            [
                f"CPU ms/request: API, Postgres, client ({client}) for /models/{{name}}",
                f"{a['model']['api_cpu_ms_per_request']:.2f}, "
                f"{a['model']['postgres_cpu_ms_per_request']:.2f}, "
                f"{a['model']['client_cpu_ms_per_request']:.2f}",
                "same for /health",
                f"{a['health']['api_cpu_ms_per_request']:.2f}, "
                f"{a['health']['postgres_cpu_ms_per_request']:.2f}, "
                f"{a['health']['client_cpu_ms_per_request']:.2f}",
                "",
                "info",
                "",
            ],
            [
                f"GET /models/{{name}} p50 / p99 ms ({client})",
                f"{a['model']['p50_ms']:.1f} / {a['model']['p99_ms']:.1f}",
                "GET /health p50 / p99 ms",
                f"{a['health']['p50_ms']:.1f} / {a['health']['p99_ms']:.1f}",
                a["model"]["p99_ms"] / a["health"]["p99_ms"],
                "info",
                "",
            ],
        ]
    return markdown_table(
        ["measure", "value", "baseline (same run)", "baseline value", "ratio", "target", ""], rows
    )
