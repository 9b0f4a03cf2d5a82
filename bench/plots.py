"""
The plots of docs/performance.md, drawn from the benchmarks' JSON results
(matplotlib: ``pip install matplotlib``)::

    python bench/plots.py        # bench/results/*.json -> docs/*.png

- docs/ping-lateness.png: the ping-lateness distribution of each run of
  bench/results/scale.json, scale-timer-per-ping.json, scale-workers.json
  (51,000 over 3 workers) and scale-300k.json (300,000 over 20 workers on
  two cores with no idle CPU left: the tail past 50 ms) -- share of Pings
  per lateness bucket, measured inside the server;
- docs/herd.png: Pings per 500 ms as the clients saw them, over the first
  35 s after 6,000 clients connected, for each ``first_ping_spread``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BENCH = Path(__file__).resolve().parent
DOCS = BENCH.parent / "docs"


def _bucket_label(bound: float, previous: float | None) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:g}"

    if math.isinf(bound):
        return f">{ms(previous or 0)}"
    return f"≤{ms(bound)}"


def lateness_plot(scales: list[dict[str, Any]], out: Path) -> None:
    runs = [run for scale in scales for run in scale["runs"] if not run["failed"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(runs))
    labels: list[str] = []
    for i, run in enumerate(runs):
        buckets = sorted((float(b), c) for b, c in run["total"]["lateness"].items())
        total = buckets[-1][1] if buckets else 0
        shares = []
        previous_count = 0.0
        labels = []
        previous_bound: float | None = None
        for bound, cumulative in buckets:
            shares.append(100 * (cumulative - previous_count) / total if total else 0)
            previous_count = cumulative
            labels.append(_bucket_label(bound, previous_bound))
            previous_bound = bound
        xs = [x + i * width for x in range(len(shares))]
        workers = f", {run['workers']} workers" if run["workers"] > 1 else ""
        protocol = run.get("protocol")
        extra = f", {protocol.rsplit('.', 1)[-1]}" if protocol else ""
        if run.get("churn"):
            extra += f", churn {run['churn']:g}/s"
        name = (
            f"{run['total']['connections']:.0f} conns, {run['interval']:g} s/{run['timeout']:g} s, "
            f"--gc {run['gc']}{workers}{extra}"
        )
        ax.bar(xs, [max(s, 1e-4) for s in shares], width, label=name)
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 150)
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_xlabel("ping lateness bucket, ms (actual send - due time, inside the server)")
    ax.set_ylabel("% of Pings (log scale)")
    ax.axvline(labels.index("≤50") + 0.9 if "≤50" in labels else 0, color="grey", ls=":")
    ax.set_title("Ping lateness at scale (bench/scale.py)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def herd_plot(herd: dict[str, Any], out: Path) -> None:
    settings = herd["settings"]
    bin_s = settings["bin_ms"] / 1000
    interval = settings["interval"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for result in herd["results"]:
        if result["failed"]:
            continue
        bins = result["bins"][: round(3.5 * interval / bin_s)]
        xs = [i * bin_s for i in range(len(bins))]
        ratio = result["peak_over_mean"]
        label = f"first_ping_spread {result['spread']:g}: peak/mean {ratio:.2f} in the window"
        ax.step(xs, bins, where="post", label=label)
    ax.axvspan(2 * interval, 3 * interval, color="grey", alpha=0.15, label="measured window")
    ax.set_xlabel(f"seconds since the first of {settings['clients']} clients connected")
    ax.set_ylabel(f"Pings per {settings['bin_ms']} ms (as the clients saw them)")
    ax.set_title(f"Thundering herd: {interval:g} s ping interval (bench/herd.py)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        default=",".join(
            str(BENCH / "results" / name) for name in (
                "scale.json",
                "scale-timer-per-ping.json",
                "scale-workers.json",
                "scale-300k.json",
            )
        ),
        help="comma-separated scale.py results, drawn together",
    )
    parser.add_argument("--herd", default=str(BENCH / "results" / "herd.json"))
    parser.add_argument("--docs", default=str(DOCS))
    args = parser.parse_args(argv)
    docs = Path(args.docs)
    drawn = []
    scales = [Path(p) for p in args.scale.split(",") if p and Path(p).is_file()]
    if scales:
        lateness_plot([json.loads(p.read_text()) for p in scales], docs / "ping-lateness.png")
        drawn.append(str(docs / "ping-lateness.png"))
    else:
        print(f"skipping ping-lateness.png: none of {args.scale}", file=sys.stderr)
    herd = Path(args.herd)
    if herd.is_file():
        herd_plot(json.loads(herd.read_text()), docs / "herd.png")
        drawn.append(str(docs / "herd.png"))
    else:
        print(f"skipping herd.png: no {herd}", file=sys.stderr)
    print("\n".join(f"wrote {p}" for p in drawn))
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
