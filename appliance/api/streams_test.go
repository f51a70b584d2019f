package api

import (
	"encoding/json"
	"testing"

	"github.com/badbatch/badbatch/appliance/streams"
)

// FuzzAppendOutput: whatever bytes a module emits (key, data, error), the
// rendered stream record is valid JSON and carries them back.
func FuzzAppendOutput(f *testing.F) {
	f.Add([]byte("k"), []byte(`{"a":1}`), "")
	f.Add([]byte{0xff, 0}, []byte("not json \x00"), "trap: \xff")
	f.Add([]byte(""), []byte(`"s"`), "guest error: bad \"event\"")
	f.Fuzz(func(t *testing.T, key, data []byte, errMsg string) {
		r := streams.Record{Sequence: 1, Kind: streams.KindEmit, Module: "m", Version: "1", Source: 2, Key: key, Data: data, Err: errMsg}
		b := appendOutput(nil, &r)
		var got struct {
			Data       json.RawMessage `json:"data"`
			DataBase64 []byte          `json:"data_base64"`
			Key        *string         `json:"key"`
			KeyBase64  []byte          `json:"key_base64"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if got.Data == nil && string(got.DataBase64) != string(data) {
			t.Fatalf("data %q rendered as %q", data, b)
		}
		if len(key) > 0 && got.Key == nil && string(got.KeyBase64) != string(key) {
			t.Fatalf("key %q rendered as %q", key, b)
		}
		if got.Key != nil && *got.Key != string(key) {
			t.Fatalf("key %q came back as %q", key, *got.Key)
		}
	})
}
