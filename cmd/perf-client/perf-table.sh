#!/usr/bin/env bash
# Produces the README performance table: builds cmd/badbatch and
# cmd/perf-client, starts one node on a loopback port with a fresh state
# directory, runs each case with perf-client (JSON kept in $OUT) and prints
# a Markdown table (needs python3 for the table only).
#
#   cmd/perf-client/perf-table.sh            # PORT=18080 DURATION=5s WARMUP=1s
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${PORT:-18080}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
VERIFY_EVENTS="${VERIFY_EVENTS:-500000}"
OUT="${OUT:-$(mktemp -d /tmp/perf-table.XXXXXX)}"
URL="http://127.0.0.1:${PORT}"
mkdir -p "$OUT"

go build -o "$OUT/badbatch" ./cmd/badbatch
go build -o "$OUT/perf-client" ./cmd/perf-client

# A ring of 65,536 slots of at most 1 KiB each (instead of 1,024 x 64 KiB) so
# that four producers with batches of 1,000 fit; everything else default
# (journal on, group commit, blocking wait strategy).
BADBATCH_SERVER_HOST=127.0.0.1 BADBATCH_RING_MAX_EVENT_SIZE=1KiB BADBATCH_LOG_LEVEL=warn \
	"$OUT/badbatch" -p "$PORT" -b 65536 --data-dir "$OUT/data" --modules-dir "$OUT/modules" \
	2>"$OUT/badbatch.log" &
NODE=$!
trap 'kill "$NODE" 2>/dev/null || true; wait "$NODE" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done

run() { # name, perf-client flags...
	local name=$1
	shift
	echo "== $name: perf-client --url $URL $*" >&2
	"$OUT/perf-client" --url "$URL" --quiet --out "$OUT/$name.json" "$@" >"$OUT/$name.txt" || {
		cat "$OUT/$name.txt" >&2
		echo "   (exit $?)" >&2
	}
	tail -n 4 "$OUT/$name.txt" >&2
}

for ack in memory durable; do
	for batch in 1 100 1000; do
		for p in 1 4; do
			run "closed-b${batch}-${ack}-p${p}" --throughput-test --duration "$DURATION" --warmup "$WARMUP" \
				--batch "$batch" --ack "$ack" --producers "$p"
		done
	done
done
# Open loop below saturation (latency from the intended send time).
run open-b1-memory-5000 --latency-test --rate 5000 --duration "$DURATION" --warmup "$WARMUP" --ack memory --producers 4
run open-b1-durable-1000 --latency-test --rate 1000 --duration "$DURATION" --warmup "$WARMUP" --ack durable --producers 4
run open-b100-durable-50000 --latency-test --rate 50000 --batch 100 --duration "$DURATION" --warmup "$WARMUP" --ack durable --producers 4
# Loss check over a larger run.
run verify-b100-durable-p4 --events "$VERIFY_EVENTS" --batch 100 --ack durable --producers 4 --connections 8 --verify

python3 - "$OUT" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
def us(v):
    return f"{v} µs" if v < 1000 else (f"{v/1000:.2f} ms" if v < 1_000_000 else f"{v/1e6:.2f} s")
print("| mode | batch | ack | producers / conns | events/s | req/s | p50 | p99 | p99.9 | max | errors | client CPU (cores) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(out, "*.json")), key=os.path.getmtime):
    r = json.load(open(f))
    lat = r["latency"] if r["mode"] == "open-loop" else r["service_time"]
    mode = "closed" if r["mode"] == "closed-loop" else f"open @ {int(r['target_events_per_s']):,} ev/s"
    errs = {k: v for k, v in r["measured"]["status"].items() if k != "200"}
    e = ", ".join(f"{k}: {v}" for k, v in sorted(errs.items())) or "0"
    if r.get("verify"):
        v = r["verify"]
        e += f"; verify: acknowledged {v['acknowledged']:,}, lost {v['lost']}, duplicated {v['duplicated']}"
    if r.get("verify_error"):
        e += "; verify error: " + r["verify_error"]
    print(f"| {mode} | {r['batch']} | {r['ack']} | {r['producers']} / {r['connections']} | {int(r['events_per_s']):,} | {int(r['requests_per_s']):,} | "
          f"{us(lat['p50_us'])} | {us(lat['p99_us'])} | {us(lat['p99_9_us'])} | {us(lat['max_us'])} | {e} | {r['client_cpu']['cores_used']:.2f} |")
PY
kill "$NODE" 2>/dev/null || true
wait "$NODE" 2>/dev/null || true
# The in-process library on the same machine, same session, for context.
echo "== in-process disruptor (go test -bench, blocking wait strategy as in the node)" >&2
# (-bench matches each /-separated level on its own, so two runs: Go
# channels as the baseline, and the disruptor with the node's wait strategy)
for pat in '^Benchmark(Unicast1P1C|ThreeProducers)$/^channel$' \
	'^Benchmark(Unicast1P1C|ThreeProducers)$/^disruptor$/^blocking$/^batch=1$'; do
	go test -run='^$' -bench="$pat" -benchtime="${BENCHTIME:-2s}" ./disruptor/ |
		tee -a "$OUT/disruptor-bench.txt" | grep -E '^Benchmark' >&2 || true
done
echo "results: $OUT" >&2
