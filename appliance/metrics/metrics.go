// Package metrics builds the appliance's Prometheus registry: build info,
// Go and process collectors, ring and consumer gauges read at scrape time,
// event counters, and the publish→consume and HTTP latency histograms. All
// names carry the badbatch_ prefix and base units (seconds, bytes).
package metrics

import (
	"net/http"
	"time"

	"github.com/klauspost/cpuid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/badbatch/badbatch/appliance/buildinfo"
	"github.com/badbatch/badbatch/appliance/pipeline"
)

// Namespace prefixes every metric.
const Namespace = "badbatch"

// Metrics holds the registry and the instruments other packages update.
type Metrics struct {
	// Registry is private to this appliance (not the global default).
	Registry *prometheus.Registry
	// PublishLatency observes publish→consume latency in seconds.
	PublishLatency prometheus.Histogram
	// HTTPDuration observes request latency in seconds by method, route and status code.
	HTTPDuration *prometheus.HistogramVec
}

// Options describes static facts exported as gauges.
type Options struct {
	Build      buildinfo.Info
	NodeID     string
	Padding    int
	StartTime  time.Time
	Status     func() pipeline.Status // read at scrape time; nil omits ring metrics
	StateGauge func() float64         // 1 ready, 0 not ready; nil omits
	// Extra collectors registered as well (journal gauges, WASM stage stats).
	Extra []prometheus.Collector
}

// New builds the registry.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		PublishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "publish_to_consume_latency_seconds",
			Help:      "Time from an event's publish into the ring until the last consumer handled it.",
			Buckets:   prometheus.ExponentialBuckets(1e-6, 4, 12), // 1µs .. ~4s
		}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "http_request_duration_seconds",
			Help:      "HTTP request latency by method, route and status code.",
			Buckets:   prometheus.ExponentialBuckets(25e-6, 4, 10), // 25µs .. ~6.5s
		}, []string{"method", "route", "code"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: Namespace}),
		m.PublishLatency,
		m.HTTPDuration,
	)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": o.Build.Version, "commit": o.Build.Commit, "goversion": o.Build.GoVersion, "node_id": o.NodeID},
	})
	buildInfo.Set(1)
	reg.MustRegister(buildInfo)
	for name, v := range map[string]float64{
		"cpu_cache_line_bytes": float64(cpuid.CPU.CacheLine),
		"cpu_physical_cores":   float64(cpuid.CPU.PhysicalCores),
		"cpu_logical_cores":    float64(cpuid.CPU.LogicalCores),
		"padding_bytes":        float64(o.Padding),
		"start_time_seconds":   float64(o.StartTime.UnixNano()) / 1e9,
	} {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help[name]})
		g.Set(v)
		reg.MustRegister(g)
	}
	if o.StateGauge != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "ready", Help: "1 when the node is ready to accept events, 0 while starting or draining."}, o.StateGauge))
	}
	if o.Status != nil {
		reg.MustRegister(&ringCollector{status: o.Status})
	}
	reg.MustRegister(o.Extra...)
	return m
}

var help = map[string]string{
	"cpu_cache_line_bytes": "Cache line size detected by cpuid.",
	"cpu_physical_cores":   "Physical cores detected by cpuid.",
	"cpu_logical_cores":    "Logical cores detected by cpuid.",
	"padding_bytes":        "Padding used between hot sequences (compile-time constant).",
	"start_time_seconds":   "Unix time the appliance started.",
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	// ContinueOnError: under systemd's ProcSubset=pid the process collector
	// cannot read /proc/stat (boot time); serve everything else rather than 500.
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, ErrorHandling: promhttp.ContinueOnError})
}

var (
	descIn        = prometheus.NewDesc(Namespace+"_events_published_total", "Events stored in the ring.", nil, nil)
	descOut       = prometheus.NewDesc(Namespace+"_events_consumed_total", "Events handled by the last consumer.", nil, nil)
	descDup       = prometheus.NewDesc(Namespace+"_events_duplicate_total", "Published events recognised as retries of an earlier (producer, sequence) and not stored again.", nil, nil)
	descRejected  = prometheus.NewDesc(Namespace+"_events_rejected_total", "Events refused because the ring stayed full or the node was shutting down.", nil, nil)
	descCapacity  = prometheus.NewDesc(Namespace+"_ring_capacity", "Ring buffer size in slots.", nil, nil)
	descCursor    = prometheus.NewDesc(Namespace+"_ring_cursor", "Highest claimed ring sequence.", nil, nil)
	descRemaining = prometheus.NewDesc(Namespace+"_ring_remaining_capacity", "Free ring slots.", nil, nil)
	descConsSeq   = prometheus.NewDesc(Namespace+"_consumer_sequence", "Last sequence processed by a consumer.", []string{"consumer"}, nil)
	descConsLag   = prometheus.NewDesc(Namespace+"_consumer_lag", "Events published but not yet processed by a consumer.", []string{"consumer"}, nil)
	descProducers = prometheus.NewDesc(Namespace+"_idempotency_producers", "Producers tracked for idempotent publish.", nil, nil)
)

type ringCollector struct {
	status func() pipeline.Status
}

func (c *ringCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIn, descOut, descDup, descRejected, descCapacity, descCursor, descRemaining, descConsSeq, descConsLag, descProducers} {
		ch <- d
	}
}

func (c *ringCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ch <- prometheus.MustNewConstMetric(descIn, prometheus.CounterValue, float64(st.EventsIn))
	ch <- prometheus.MustNewConstMetric(descOut, prometheus.CounterValue, float64(st.EventsOut))
	ch <- prometheus.MustNewConstMetric(descDup, prometheus.CounterValue, float64(st.Duplicates))
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.Rejected))
	ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(st.Capacity))
	ch <- prometheus.MustNewConstMetric(descCursor, prometheus.GaugeValue, float64(st.Cursor))
	ch <- prometheus.MustNewConstMetric(descRemaining, prometheus.GaugeValue, float64(st.RemainingCapacity))
	ch <- prometheus.MustNewConstMetric(descProducers, prometheus.GaugeValue, float64(st.Producers))
	for _, cs := range st.Consumers {
		ch <- prometheus.MustNewConstMetric(descConsSeq, prometheus.GaugeValue, float64(cs.Sequence), cs.Name)
		ch <- prometheus.MustNewConstMetric(descConsLag, prometheus.GaugeValue, float64(cs.Lag), cs.Name)
	}
}
