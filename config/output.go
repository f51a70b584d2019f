package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"

	"github.com/BurntSushi/toml"
)

// Redacted is what Redacted puts in place of every secret.
const Redacted = "<redacted>"

// Redacted returns a copy of c with every secret (API tokens, cluster keys)
// replaced by "<redacted>", keeping how many there are.
func (c Config) Redacted() Config {
	out := c.clone()
	for i := range theSchema.fields {
		f := &theSchema.fields[i]
		if !f.secret {
			continue
		}
		v := f.value(&out)
		if f.typ == stringsType {
			n := v.Len()
			red := make([]string, n)
			for j := range red {
				red[j] = Redacted
			}
			v.Set(reflect.ValueOf(red))
		} else if v.Kind() == reflect.String && v.Len() > 0 {
			v.SetString(Redacted)
		}
	}
	for i := range out.Sinks {
		v := reflect.ValueOf(&out.Sinks[i]).Elem()
		for _, f := range sinkFields {
			if fv := v.Field(f.index); f.secret && fv.Len() > 0 {
				fv.SetString(Redacted)
			}
		}
	}
	return out
}

// clone returns a deep copy (the slices are not shared).
func (c Config) clone() Config {
	out := c
	out.API.PublishTokens = slices.Clone(c.API.PublishTokens)
	out.API.AdminTokens = slices.Clone(c.API.AdminTokens)
	out.Cluster.Seeds = slices.Clone(c.Cluster.Seeds)
	out.Cluster.Keyring = slices.Clone(c.Cluster.Keyring)
	out.Sinks = slices.Clone(c.Sinks)
	return out
}

// TOML renders c as a TOML document that Load accepts (used by
// --check-config, normally on c.Redacted()). Durations and sizes are
// written as strings ("250ms", "16MiB").
func (c Config) TOML() ([]byte, error) {
	var buf bytes.Buffer
	c = c.clone()
	// Write empty lists as [] rather than leaving the key out.
	for _, p := range []*[]string{&c.API.PublishTokens, &c.API.AdminTokens, &c.Cluster.Seeds, &c.Cluster.Keyring} {
		if *p == nil {
			*p = []string{}
		}
	}
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, fmt.Errorf("config: encode TOML: %w", err)
	}
	return buf.Bytes(), nil
}

// Change is one key whose value differs between two configurations.
type Change struct {
	Key string // dotted key, e.g. "log.level"
	Old string // old value (secrets redacted)
	New string // new value (secrets redacted)
	// Live reports whether the key is meant to take effect on SIGHUP
	// without a restart (tagged reload:"live" in the schema: tokens, limits,
	// log level, publish timeout, module reload settings, seeds).
	Live bool
}

// Diff lists the keys whose values differ from old to new, in schema order.
// A reload applies the Live changes and logs the others as needing a restart.
func Diff(old, new Config) []Change {
	var out []Change
	ro, rn := old.Redacted(), new.Redacted()
	for i := range theSchema.fields {
		f := &theSchema.fields[i]
		a, b := f.value(&old).Interface(), f.value(&new).Interface()
		if reflect.DeepEqual(a, b) || (f.typ == stringsType && reflect.ValueOf(a).Len() == 0 && reflect.ValueOf(b).Len() == 0) {
			continue
		}
		o, n := f.format(&ro), f.format(&rn)
		if f.secret && o == n {
			n += " (changed)"
		}
		out = append(out, Change{Key: f.key, Old: o, New: n, Live: f.live})
	}
	return append(out, diffSinks(ro.Sinks, rn.Sinks, old.Sinks, new.Sinks)...)
}

// diffSinks lists sinks added, removed or changed (one Change "sinks.<name>"
// each, all live: SIGHUP applies them). ro and rn are the redacted lists.
func diffSinks(ro, rn, old, new []SinkConfig) []Change {
	var out []Change
	find := func(list []SinkConfig, name string) int {
		for i := range list {
			if list[i].Name == name {
				return i
			}
		}
		return -1
	}
	for i := range old {
		j := find(new, old[i].Name)
		switch {
		case j < 0:
			out = append(out, Change{Key: "sinks." + old[i].Name, Old: ro[i].summary(), New: "(removed)", Live: true})
		case !reflect.DeepEqual(old[i], new[j]):
			n := rn[j].summary()
			if n == ro[i].summary() {
				n += " (settings or credentials changed)"
			}
			out = append(out, Change{Key: "sinks." + old[i].Name, Old: ro[i].summary(), New: n, Live: true})
		}
	}
	for j := range new {
		if find(old, new[j].Name) < 0 {
			out = append(out, Change{Key: "sinks." + new[j].Name, Old: "(none)", New: rn[j].summary(), Live: true})
		}
	}
	return out
}

// summary is a one-line description of a sink for diffs and logs.
func (s SinkConfig) summary() string {
	return fmt.Sprintf("%s %s <- %s (enabled=%v)", s.Type, s.URL, s.Source, s.Enabled)
}
