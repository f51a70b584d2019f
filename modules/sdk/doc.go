// Package sdk is the Go guest SDK for BadBatch handler modules (ABI version 1,
// see modules/ABI.md).
//
// A handler module is a package main built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm .
//
// that registers its handler from an init function (a c-shared reactor never
// runs main):
//
//	func init() {
//		sdk.Register(sdk.Module{
//			Process: func(ev *sdk.Event, out *sdk.Out) { out.Forward() },
//		})
//	}
//
// The SDK owns the fixed input and output buffers the ABI requires, decodes
// input records into zero-copy Event views and encodes the handler's outputs;
// nothing is allocated per event. The record codec (this file's siblings
// without build tags) is plain Go and is tested natively; the wasm exports and
// host imports live in files built only for GOOS=wasip1.
package sdk
