package disruptor

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// stressEvents scales the stress tests: the default keeps `go test ./...`
// fast; CI and soak runs raise it, e.g. -args -stress.events=5000000.
var stressEvents = flag.Int("stress.events", 200_000, "events per producer in the stress tests")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
