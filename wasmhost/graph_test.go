package wasmhost

import (
	"fmt"
	"strings"
	"testing"
)

func TestOrder(t *testing.T) {
	m := func(name string, after ...string) *Manifest {
		x := DefaultManifest(name)
		x.After = after
		return x
	}
	cases := []struct {
		name string
		mans []*Manifest
		want string
		err  string
	}{
		{"parallel", []*Manifest{m("b"), m("a")}, "[[a b]]", ""},
		{"chain", []*Manifest{m("c", "b"), m("b", "a"), m("a")}, "[[a] [b] [c]]", ""},
		{"diamond", []*Manifest{m("d", "b", "c"), m("b", "a"), m("c", "a"), m("a")}, "[[a] [b c] [d]]", ""},
		{"unknown", []*Manifest{m("a", "zz")}, "", "not loaded"},
		{"cycle", []*Manifest{m("a", "b"), m("b", "a"), m("c")}, "", "cycle through their after lists: a, b"},
	}
	for _, tc := range cases {
		got, err := Order(tc.mans)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.name, got, err, tc.want)
		}
	}
}
