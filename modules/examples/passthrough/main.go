//go:build wasip1

// Command passthrough is a BadBatch handler module that forwards every event
// unchanged to the module's default output.
package main

import "github.com/badbatch/badbatch/modules/sdk"

func init() {
	sdk.Register(sdk.Module{
		Process: func(_ *sdk.Event, out *sdk.Out) { out.Forward() },
	})
}

func main() {}
