#!/usr/bin/env python3
"""Turn the JSON of `sparsetrain bench all --json FILE` into the Markdown
tables of BENCHMARKS.md (printed to stdout).

    python3 scripts/bench_table.py bench.json >> BENCHMARKS.md
"""
import datetime
import json
import sys


def main(path):
    with open(path) as f:
        d = json.load(f)
    dev = d["device"]
    day = datetime.datetime.fromtimestamp(d["unix_time"], datetime.timezone.utc).strftime("%Y-%m-%d")
    print(f"## {day}, {dev['name']} ({dev['backend']}, {dev['type']}; {dev['driver']})\n")
    mv = d["matmul_variant"]
    print(f"### Matmul (chosen variant: {mv['chosen']}, by {mv['by']})\n")
    print("| layout | M×N×K | variant | GFLOP/s | runs | × naive |")
    print("|---|---|---|---:|---:|---:|")
    for r in d["matmul"]:
        # What `bench matmul` prints after the variant: splits, wide's depth
        # and tile, coop's mode, loop and shape (None where not applicable).
        extra = ""
        if r.get("splits", 1) > 1:
            extra += f" split {r['splits']}"
        if r.get("depth") == 16:
            extra += " bk 16"
        if r.get("tile") and r["tile"] != "128x128":
            extra += f" {r['tile']}"
        if r.get("coop") in ("staged", "tiled"):
            extra += f" {r['coop']}"
        elif r.get("coop") == "direct" and r.get("coop_unroll") is False:
            extra += " no unroll"
        if r.get("coop_shape") in ("4x2x4", "4x4x2"):
            extra += f" {r['coop_shape']}"
        if r.get("kpack") is True:
            extra += " kpack"
        chosen = extra + (" (chosen)" if r["variant"] == mv["chosen"] and not extra else "")
        print(f"| {r['layout']} | {r['m']}×{r['n']}×{r['k']} | {r['variant']}{chosen} "
              f"| {r['gflops']:.2f} | {r['runs']} | {'—' if r['vs_naive'] is None else format(r['vs_naive'], '.2f')} |")
    batch = d.get("batch", 256)
    print(f"\n### Training step (batch {batch})\n")
    print("step: runs pipelined, timed from the first submission until all are done (per step; the first run's "
          "staging and encoding left out, as training overlaps them with the device's work); latency: one step "
          "submitted and waited for "
          "(median); host: writing the step blocks, encoding the plan and submitting, per step of a submission of "
          "`chunk` steps (median); host CPU: the same in the submitting thread's CPU time; host 1: the same for a "
          "step submitted alone\n")
    print("| model | mode | step ms | latency ms | GPU ms | host µs | host µs/dispatch | host CPU µs/dispatch | chunk "
          "| host 1 µs/dispatch "
          "| dispatches | passes | speedup vs dense | FLOP ratio | read-back bytes/step |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in d["train"]:
        model = r["model"] if isinstance(r["model"], str) else "-".join(str(s) for s in r["model"])
        mode = "dense" if r["keep"] is None else f"keep {r['keep']:g}"
        gpu = "—" if r.get("gpu_ms") is None else f"{r['gpu_ms']:.2f}"
        disp = max(r.get("dispatches", 1) or 1, 1)
        cpu = "—" if r.get("host_cpu_us") is None else f"{r['host_cpu_us'] / disp:.2f}"
        print(f"| {model} | {mode} | {r['step_ms']:.2f} | {r.get('latency_ms', float('nan')):.2f} | {gpu} "
              f"| {r.get('host_us', float('nan')):.0f} | {r.get('host_us_per_dispatch', float('nan')):.2f} "
              f"| {cpu} | {r.get('chunk', 1)} | {r.get('host1_us', float('nan')) / max(r.get('dispatches', 1) or 1, 1):.2f} "
              f"| {r.get('dispatches', '')} | {r.get('passes', '')} | {r['speedup']:.2f}× "
              f"| {r['flop_ratio']:.2f}× | {r['readback_bytes_per_step']:.0f} |")
    profiled = [r for r in d["train"] if r["profile_ms"]]
    if profiled:
        families = sorted({f for r in profiled for f in r["profile_ms"]})
        print("\n### Share of GPU step time per kernel family\n")
        print("| model | mode | " + " | ".join(families) + " |")
        print("|---|---|" + "---:|" * len(families))
        for r in profiled:
            total = sum(r["profile_ms"].values()) or 1.0
            model = r["model"] if isinstance(r["model"], str) else "-".join(str(s) for s in r["model"])
            mode = "dense" if r["keep"] is None else f"keep {r['keep']:g}"
            cells = [f"{100 * r['profile_ms'].get(f, 0.0) / total:.0f}%" for f in families]
            print(f"| {model} | {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_table.py BENCH.json")
    main(sys.argv[1])
