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
	return out
}

// clone returns a deep copy (the slices are not shared).
func (c Config) clone() Config {
	out := c
	out.API.PublishTokens = slices.Clone(c.API.PublishTokens)
	out.API.AdminTokens = slices.Clone(c.API.AdminTokens)
	out.Cluster.Seeds = slices.Clone(c.Cluster.Seeds)
	out.Cluster.Keyring = slices.Clone(c.Cluster.Keyring)
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
	return out
}
