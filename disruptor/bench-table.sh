#!/usr/bin/env bash
# Produces the README's disruptor tables: ROUNDS alternating rounds (default
# 16) of the throughput benchmarks and the one-hop latency benchmark, each
# round tagged with the placement of the two vCPUs it ran on, then per
# placement a Markdown table of every benchmark and one of the disruptor
# issue's targets (needs python3 for the tables only).
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
    def ratio(name):
        base = name.split("/")[0] + "/channel"
        return med([rounds[r][base]["ns/op"] / rounds[r][name]["ns/op"] for r in rs])
    targets = [
        ("1P1C single publish ≥ 5× (busy-spin, yielding)", 5,
         ["Unicast1P1C/disruptor/busy-spin/batch=1", "Unicast1P1C/disruptor/yielding/batch=1"]),
        ("batch-16 ≥ 20× (busy-spin, yielding, blocking)", 20,
         [f"Unicast1P1C/disruptor/{w}/batch=16" for w in ("busy-spin", "yielding", "blocking")]),
        ("3P1C ≥ 2× (yielding, blocking)", 2,
         ["ThreeProducers/disruptor/yielding/batch=1", "ThreeProducers/disruptor/blocking/batch=1"]),
        ("pipeline ≥ 5× (yielding)", 5, ["Pipeline3/disruptor/yielding"]),
        ("diamond ≥ 5× (yielding)", 5, ["Diamond/disruptor/yielding"]),
    ]
    print("\n| target (median over these rounds) | measured | holds |")
    print("|---|---|---|")
    for label, want, names in targets:
        got = [ratio(n) for n in names]
        print(f"| {label} | {' / '.join(f'{g:.1f}×' for g in got)} | {'yes' if min(got) >= want else 'no'} |")
    allocs = max(v.get("allocs/op", 0) for r in rs for k, v in rounds[r].items() if not k.startswith("Latency"))
    print(f"| 0 allocs/op on every path | max {allocs:.0f} | {'yes' if allocs == 0 else 'no'} |")
    p50 = med([rounds[r]["Latency/disruptor/busy-spin"]["p50-ns"] for r in rs])
    print(f"| busy-spin one-hop p50 ≤ 200 ns | {p50:.0f} ns | {'yes' if p50 <= 200 else 'no'} |")
    print("\n| one-hop latency, ns | p50 median (range) | p99 median | p99.9 median |")
    print("|---|---|---|---|")
    for name in ("Latency/cacheline-floor", "Latency/disruptor/busy-spin"):
        p50 = [rounds[r][name]["p50-ns"] for r in rs]
        p99 = [rounds[r][name]["p99-ns"] for r in rs]
        p999 = [rounds[r][name]["p99.9-ns"] for r in rs]
        print(f"| {name} | {med(p50):.0f} ({min(p50):.0f}–{max(p50):.0f}) | {med(p99):.0f} | {med(p999):.0f} |")
EOF
