#!/usr/bin/env bash
# Produces the README's disruptor tables: ROUNDS alternating rounds (default
# 16) of the throughput benchmarks and the one-hop latency benchmark, each
# round tagged with the placement of the two vCPUs it ran on, then one
# Markdown table per placement (needs python3 for the tables only).
#
# On a shared 2-vCPU VM the hypervisor moves the vCPUs between cores that
# share a cache and cores that do not, from minute to minute; the two cases
# differ by 4-6x in cache-line transfer time. A round counts as "shared
# cache" when BenchmarkUnicast1P1C/ring-floor/batch=1 (the simplest possible ring,
# measured in the same round) is under 10 ns per event. Every ratio is
# against the channel baseline of the same round; the table gives the median
# and the range over the rounds of that placement.
#
#   disruptor/bench-table.sh            # ROUNDS=16 OUT=/tmp/bench-table.XXXXXX
set -euo pipefail
cd "$(dirname "$0")"

ROUNDS="${ROUNDS:-16}"
OUT="${OUT:-$(mktemp -d /tmp/bench-table.XXXXXX)}"
mkdir -p "$OUT"
go test -c -o "$OUT/disruptor.test" .
: >"$OUT/rounds.txt"
for r in $(seq "$ROUNDS"); do
	for lat in Latency/cacheline-floor Latency/disruptor/busy-spin; do
		"$OUT/disruptor.test" -test.run '^$' -test.bench "$lat" -test.benchtime 200000x |
			grep '^Benchmark' | sed "s/^/R$r /" >>"$OUT/rounds.txt"
	done
	"$OUT/disruptor.test" -test.run '^$' -test.bench 'Unicast|ThreeProd|Pipeline|Multicast|Diamond' \
		-test.benchtime 2000000x -test.benchmem | grep '^Benchmark' | sed "s/^/R$r /" >>"$OUT/rounds.txt"
done
echo "raw results: $OUT/rounds.txt" >&2

python3 - "$OUT/rounds.txt" <<'EOF'
import collections, re, statistics, sys

rounds = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.split()
    r, name = f[0], re.sub(r"-\d+$", "", f[1].removeprefix("Benchmark"))
    vals = {f[i + 1]: float(f[i]) for i in range(3, len(f) - 1, 2) if re.match(r"^[\d.]+$", f[i])}
    rounds[r][name] = vals

def med(xs):
    return statistics.median(xs)

groups = {
    "vCPUs sharing a cache": [r for r in rounds if rounds[r]["Unicast1P1C/ring-floor/batch=1"]["ns/op"] < 10],
    "vCPUs not sharing a cache": [r for r in rounds if rounds[r]["Unicast1P1C/ring-floor/batch=1"]["ns/op"] >= 10],
}
first = next(iter(rounds.values()))
for title, rs in groups.items():
    print(f"\n#### {title}: {len(rs)} of {len(rounds)} rounds\n")
    if not rs:
        continue
    print("| benchmark | ns/event, median (range) | events/s | × channel, median (range) | allocs/op |")
    print("|---|---|---|---|---|")
    for name in first:
        if name.startswith("Latency"):
            continue
        base = name.split("/")[0] + "/channel"
        ns = [rounds[r][name]["ns/op"] for r in rs]
        ratio = [rounds[r][base]["ns/op"] / rounds[r][name]["ns/op"] for r in rs]
        allocs = max(rounds[r][name].get("allocs/op", 0) for r in rs)
        print(f"| {name} | {med(ns):.2f} ({min(ns):.2f}–{max(ns):.2f}) | {1e3 / med(ns):.0f} M "
              f"| {med(ratio):.1f} ({min(ratio):.1f}–{max(ratio):.1f}) | {allocs:.0f} |")
    print("\n| one-hop latency, ns | p50 median (range) | p99 median | p99.9 median |")
    print("|---|---|---|---|")
    for name in ("Latency/cacheline-floor", "Latency/disruptor/busy-spin"):
        p50 = [rounds[r][name]["p50-ns"] for r in rs]
        p99 = [rounds[r][name]["p99-ns"] for r in rs]
        p999 = [rounds[r][name]["p99.9-ns"] for r in rs]
        print(f"| {name} | {med(p50):.0f} ({min(p50):.0f}–{max(p50):.0f}) | {med(p99):.0f} | {med(p999):.0f} |")
EOF
