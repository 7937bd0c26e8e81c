"""The census's report: one row per class and a total line, then what stood out per class."""

from __future__ import annotations

from collections import Counter

from bench.hostile.census import Tally

COLUMNS = [
    ("class", 44),
    ("tried", 6),
    ("REST", 5),
    ("gRPC", 5),
    ("2xx/OK", 7),
    ("4xx", 5),
    ("429/RE", 7),
    ("5xx/INT", 8),
    ("closed", 7),
    ("hangs", 6),
    ("crash", 6),
    ("skip", 5),
    ("gw MiB", 7),
    ("br MiB", 7),
    ("s", 5),
]


LEGEND = [
    "2xx/OK: answered; 4xx: other 4xx, and gRPC codes of a client's mistake; 429/RE: 429 or",
    "RESOURCE_EXHAUSTED; 5xx/INT: 5xx, INTERNAL, UNKNOWN, DATA_LOSS; closed: no answer on the",
    "connection, UNAVAILABLE; hangs: no answer within the deadline, or /health unanswered after",
    "the class; crash: the gateway or its bridge exited (the gateway is restarted fresh); skip:",
    "inputs not sent because their group crashed or wedged it; gw/br MiB: peak RSS of the gateway",
    "and of its REST bridge (VmRSS sampled every 20 ms; memory and TOTAL: VmHWM); s: seconds.",
]


def _row(cells: list[str]) -> str:
    out = []
    for (_, width), cell in zip(COLUMNS, cells, strict=True):
        out.append(cell.ljust(width) if width == COLUMNS[0][1] else cell.rjust(width))
    return " ".join(out)


def _cells(name: str, tally: Tally) -> list[str]:
    b = tally.buckets
    return [
        name[: COLUMNS[0][1]],
        str(tally.tried),
        str(tally.protocols["rest"]),
        str(tally.protocols["grpc"]),
        str(b["ok"]),
        str(b["client"]),
        str(b["429"]),
        str(b["5xx"]),
        str(b["none"]),
        str(b["hang"]),
        str(tally.crashes),
        str(tally.skipped),
        f"{tally.peak_gateway_kib / 1024:.0f}",
        f"{tally.peak_bridge_kib / 1024:.0f}",
        f"{tally.seconds:.0f}",
    ]


def render(tallies: list[Tally], hwm_kib: tuple[int, int]) -> str:
    """The table: peak RSS per class is the sampled VmRSS peak during the class (the memory
    class: VmHWM of its own gateway); the total line gives the VmHWM of the gateway and bridge
    over every instance the census started (the memory attack's included)."""
    lines = [_row([name for name, _ in COLUMNS]), _row(["-" * width for _, width in COLUMNS])]
    total = Tally("total")
    for tally in tallies:
        lines.append(_row(_cells(tally.name, tally)))
        total.tried += tally.tried
        total.skipped += tally.skipped
        total.crashes += tally.crashes
        total.buckets.update(tally.buckets)
        total.protocols.update(tally.protocols)
        total.details.update(tally.details)
        total.seconds += tally.seconds
        total.merge_rss(tally.peak_gateway_kib, tally.peak_bridge_kib)
    total.merge_rss(*hwm_kib)
    lines.append(_row(["-" * width for _, width in COLUMNS]))
    lines.append(_row(_cells("TOTAL (RSS: VmHWM over all)", total)))
    lines += LEGEND
    lines.append("")
    lines.append("answers per class:")
    for tally in tallies:
        lines.append(f"  {tally.name}: {_details(tally.details)}")
        for note in tally.notable:
            lines.append(f"    ! {note}")
        if tally.unnoted:
            lines.append(f"    ! ... and {tally.unnoted} more 5xx/429/closed/hang answers")
        if tally.accepted:
            shown = "; ".join(tally.accepted[:6])
            more = f" (+{len(tally.accepted) - 6} more)" if len(tally.accepted) > 6 else ""
            lines.append(
                f"    ? 2xx where a refusal is expected ({len(tally.accepted)}): {shown}{more}"
            )
        for event in tally.events:
            lines.append(f"    * {event}")
    return "\n".join(lines)


def _details(details: Counter[str]) -> str:
    rest = sorted((d for d in details if d.startswith("rest")), key=lambda d: d)
    grpc = sorted((d for d in details if d.startswith("grpc")), key=lambda d: -details[d])
    other = [d for d in details if not d.startswith(("rest", "grpc"))]
    parts = [f"{d.split(' ', 1)[-1]}x{details[d]}" for d in rest]
    text = "REST " + " ".join(parts) if parts else "REST -"
    text += "; gRPC " + (" ".join(f"{d.split(' ', 1)[1]}x{details[d]}" for d in grpc) or "-")
    if other:
        text += "; " + " ".join(f"{d}x{details[d]}" for d in other)
    return text
