package appliance

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/badbatch/badbatch/config"
)

// benchConfig is what the HTTP benchmarks start from: a 64 Ki ring of
// 256-byte events, batches of up to 1000, fresh data and module
// directories.
func benchConfig(b *testing.B) config.Config {
	cfg := config.Default()
	cfg.Node.DataDir = b.TempDir()
	cfg.Modules.Dir = b.TempDir()
	cfg.Ring.BufferSize = 1 << 16
	cfg.Ring.MaxEventSize = 256
	cfg.API.MaxBatch = 1000
	cfg.Log.Level = "error"
	return cfg
}

// startBench runs an appliance with cfg on a loopback port until the
// benchmark ends and returns it with its address.
func startBench(b *testing.B, cfg config.Config, opts ...Option) (*Appliance, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.DiscardHandler), append(opts, WithListener(ln))...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return a, ln.Addr().String()
}

// benchBody is one event with data, or a JSON array of batch of them.
func benchBody(batch int, data string) []byte {
	ev := `{"data":` + data + `}`
	if batch == 1 {
		return []byte(ev)
	}
	return []byte("[" + strings.TrimSuffix(strings.Repeat(ev+",", batch), ",") + "]")
}

// benchClient is a fasthttp client for addr with a plain dialer: fasthttp's
// default one starts a process-wide DNS cache cleaner goroutine that never
// ends (goleak). Its idle connections are closed when the benchmark ends.
func benchClient(b *testing.B, addr string, conns int) *fasthttp.HostClient {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: conns,
		Dial: func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }}
	b.Cleanup(c.CloseIdleConnections)
	return c
}

// benchRequest is a POST of body to url for fasthttp (release both after use).
func benchRequest(url string, body []byte) (*fasthttp.Request, *fasthttp.Response) {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	return req, fasthttp.AcquireResponse()
}
