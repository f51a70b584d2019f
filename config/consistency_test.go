package config

import (
	"slices"
	"testing"

	"github.com/badbatch/badbatch/disruptor"
)

// TestWaitStrategiesMatchDisruptor keeps the accepted names in step with
// what the ring actually implements (test-only import; config itself
// depends on nothing but toml and pflag).
func TestWaitStrategiesMatchDisruptor(t *testing.T) {
	if got, want := WaitStrategies(), disruptor.WaitStrategyNames(); !slices.Equal(got, want) {
		t.Errorf("config accepts %v, disruptor implements %v", got, want)
	}
	for _, name := range WaitStrategies() {
		if _, err := disruptor.ParseWaitStrategy(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
