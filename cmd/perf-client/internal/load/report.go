package load

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// WriteText writes the human-readable report.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := "closed loop (each connection sends its next request when the previous is answered)"
	if r.Mode == "open-loop" {
		mode = fmt.Sprintf("open loop at %s events/s (%s req/s), latency from the intended send time",
			Group(int64(r.TargetRate)), trimFloat(r.TargetRate/float64(r.Batch)))
	}
	fmt.Fprintf(&b, "perf-client: %s\n", mode)
	fmt.Fprintf(&b, "  target %s, ack=%s, %d producer(s), %d connection(s), batch %d (%s), payload %d B (request body %d B)\n",
		r.URL, r.Ack, r.Producers, r.Connections, r.Batch, r.Format, r.PayloadSize, r.BodyBytes)
	fmt.Fprintf(&b, "  measured %.2fs", r.ElapsedS)
	if r.WarmupS > 0 {
		fmt.Fprintf(&b, " after %s warmup (excluded)", time.Duration(r.WarmupS*float64(time.Second)))
	}
	fmt.Fprintf(&b, "; wall %.2fs\n", r.WallS)
	m := r.Measured
	retries := ""
	if m.Retries > 0 {
		retries = fmt.Sprintf(" (%s of them retries)", Group(m.Retries))
	}
	fmt.Fprintf(&b, "requests:   %s sent%s, %s ok (200)%s\n", Group(m.Requests), retries, Group(m.RequestsOK), statusLine(m.Status))
	fmt.Fprintf(&b, "events:     %s sent, %s acknowledged, %s refused, %s unknown (no answer)",
		Group(m.EventsSent), Group(m.EventsAcked), Group(m.EventsRefused), Group(m.EventsUnknown))
	if m.EventsDuplicate > 0 {
		fmt.Fprintf(&b, ", %s answered as duplicates", Group(m.EventsDuplicate))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "throughput: %s events/s, %s requests/s\n", Group(int64(r.EventsPerSec)), Group(int64(r.RequestsPerSec)))
	if r.Mode == "open-loop" {
		writePct(&b, "latency (from intended send; coordinated omission corrected)", r.Latency)
		writePct(&b, "service time (from actual send)", r.ServiceTime)
		writePct(&b, "client send lag (actual - intended send; timer jitter, busy connections)", r.SendLag)
		if r.NotSent > 0 {
			fmt.Fprintf(&b, "WARNING: %s scheduled requests were never sent: the client fell too far behind the target rate, so latency is under-reported\n", Group(r.NotSent))
		}
	} else {
		writePct(&b, "latency (request service time)", r.ServiceTime)
	}
	if r.Total.Requests != m.Requests {
		fmt.Fprintf(&b, "whole run incl. warmup: %s requests, %s events acknowledged%s\n",
			Group(r.Total.Requests), Group(r.Total.EventsAcked), statusLine(r.Total.Status))
	}
	keys := make([]string, 0, len(r.ErrorSamples))
	for k := range r.ErrorSamples {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "first %s answer: %s\n", k, strings.TrimSpace(r.ErrorSamples[k]))
	}
	c := r.ClientCPU
	fmt.Fprintf(&b, "client CPU: user %.2fs + system %.2fs = %.2f cores busy on average (of %d CPUs, GOMAXPROCS %d)\n",
		c.UserSeconds, c.SystemSeconds, c.Cores, c.NumCPU, c.GOMAXPROCS)
	if c.Cores > 0.8*float64(min(c.NumCPU, c.GOMAXPROCS)) {
		fmt.Fprintf(&b, "WARNING: the client kept %.2f of %d usable cores busy: it may be the bottleneck (run it on another machine or core set)\n",
			c.Cores, min(c.NumCPU, c.GOMAXPROCS))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statusLine(st map[string]int64) string {
	var parts []string
	keys := make([]string, 0, len(st))
	for k := range st {
		if k != "200" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %s", k, Group(st[k])))
	}
	if len(parts) == 0 {
		return ", errors: none"
	}
	return ", errors: " + strings.Join(parts, ", ")
}

func writePct(b *strings.Builder, title string, p Percentiles) {
	if p.Count == 0 {
		fmt.Fprintf(b, "%s: no answered requests\n", title)
		return
	}
	fmt.Fprintf(b, "%s, %s requests:\n", title, Group(p.Count))
	fmt.Fprintf(b, "  p50 %s  p90 %s  p99 %s  p99.9 %s  p99.99 %s  max %s  mean %s\n",
		us(p.P50), us(p.P90), us(p.P99), us(p.P999), us(p.P9999), us(p.Max), us(int64(p.Mean)))
	if p.Clamped > 0 {
		fmt.Fprintf(b, "  (%d values above 100s recorded as 100s)\n", p.Clamped)
	}
}

// us formats microseconds.
func us(v int64) string {
	switch {
	case v < 1000:
		return fmt.Sprintf("%dµs", v)
	case v < 1_000_000:
		return fmt.Sprintf("%.2fms", float64(v)/1e3)
	default:
		return fmt.Sprintf("%.2fs", float64(v)/1e6)
	}
}

// trimFloat formats a rate: grouped when whole, else with up to 2 decimals.
func trimFloat(f float64) string {
	if f == float64(int64(f)) {
		return Group(int64(f))
	}
	s := fmt.Sprintf("%.2f", f)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
