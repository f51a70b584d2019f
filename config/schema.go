package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// field describes one leaf key of the schema, found by walking Config's
// struct tags, so flags, environment names, redaction and the example-file
// test can never disagree with the types.
type field struct {
	key     string // "ring.buffer_size"
	section string // "ring"
	name    string // "buffer_size"
	env     string // "BADBATCH_RING_BUFFER_SIZE"
	index   []int  // reflect field index path from Config
	typ     reflect.Type
	secret  bool
	live    bool
}

// schema is the immutable list of keys, in struct order.
type schema struct {
	fields   []field
	byKey    map[string]*field
	byEnv    map[string]*field
	sections map[string]bool
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	stringsType  = reflect.TypeFor[[]string]()
)

// theSchema is built once from the Config type and never modified.
var theSchema = buildSchema()

func buildSchema() *schema {
	s := &schema{byKey: map[string]*field{}, byEnv: map[string]*field{}, sections: map[string]bool{}}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		sf := ct.Field(i)
		sec := tomlName(sf)
		if sf.Type.Kind() == reflect.Slice {
			continue // arrays of tables ([[sinks]]) have their own parser
		}
		s.sections[sec] = true
		for j := range sf.Type.NumField() {
			ff := sf.Type.Field(j)
			name := tomlName(ff)
			s.fields = append(s.fields, field{
				key:     sec + "." + name,
				section: sec,
				name:    name,
				env:     "BADBATCH_" + strings.ToUpper(sec) + "_" + strings.ToUpper(name),
				index:   []int{i, j},
				typ:     ff.Type,
				secret:  ff.Tag.Get("secret") == "true",
				live:    ff.Tag.Get("reload") == "live",
			})
		}
	}
	for i := range s.fields {
		f := &s.fields[i]
		if _, dup := s.byEnv[f.env]; dup {
			panic("config: duplicate environment name " + f.env)
		}
		s.byKey[f.key] = f
		s.byEnv[f.env] = f
	}
	return s
}

func tomlName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
	if name == "" {
		panic("config: field " + sf.Name + " has no toml tag")
	}
	return name
}

// Keys returns every leaf key of the schema ("server.port", ...) in
// declaration order.
func Keys() []string {
	out := make([]string, len(theSchema.fields))
	for i, f := range theSchema.fields {
		out[i] = f.key
	}
	return out
}

// EnvName returns the BADBATCH_* environment variable for a dotted key, or
// "" for an unknown key.
func EnvName(key string) string {
	if f, ok := theSchema.byKey[key]; ok {
		return f.env
	}
	return ""
}

// value returns the addressable field of c.
func (f *field) value(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(f.index)
}

// setTOML converts a value decoded by BurntSushi/toml into the field's type.
func (f *field) setTOML(c *Config, raw any) error {
	return setTOMLValue(f.value(c), raw)
}

// setTOMLValue converts a decoded TOML value into v (a settable field of
// one of the schema's types).
func setTOMLValue(v reflect.Value, raw any) error {
	switch v.Type() {
	case durationType:
		switch x := raw.(type) {
		case string:
			d, err := ParseDuration(x)
			if err != nil {
				return err
			}
			v.Set(reflect.ValueOf(d))
			return nil
		case int64:
			return fmt.Errorf("durations are strings with a unit: write e.g. \"250ms\" or \"%ds\", not the bare integer %d (it would mean nanoseconds)", x, x)
		default:
			return fmt.Errorf("must be a duration string such as \"250ms\", not %s", tomlTypeName(raw))
		}
	case byteSizeType:
		switch x := raw.(type) {
		case int64:
			if x < 0 {
				return fmt.Errorf("size must not be negative (got %d)", x)
			}
			v.SetInt(x)
			return nil
		case string:
			b, err := ParseByteSize(x)
			if err != nil {
				return err
			}
			v.SetInt(int64(b))
			return nil
		default:
			return fmt.Errorf("must be a size such as \"64KiB\" or a number of bytes, not %s", tomlTypeName(raw))
		}
	case stringsType:
		arr, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("must be an array of strings such as [\"a\", \"b\"], not %s", tomlTypeName(raw))
		}
		out := make([]string, 0, len(arr))
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("element %d must be a string, not %s", i, tomlTypeName(e))
			}
			out = append(out, s)
		}
		v.Set(reflect.ValueOf(out))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("must be a string, not %s", tomlTypeName(raw))
		}
		v.SetString(s)
	case reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			return fmt.Errorf("must be an integer, not %s", tomlTypeName(raw))
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return fmt.Errorf("integer %d is out of range", n)
		}
		v.SetInt(n)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return fmt.Errorf("must be true or false, not %s", tomlTypeName(raw))
		}
		v.SetBool(b)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
	return nil
}

// setString converts an environment or flag value into the field's type.
// Lists are comma-separated; blanks around items and empty items are dropped.
func (f *field) setString(c *Config, s string) error {
	v := f.value(c)
	switch f.typ {
	case durationType:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(d))
		return nil
	case byteSizeType:
		b, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
		return nil
	case stringsType:
		v.Set(reflect.ValueOf(splitList(s)))
		return nil
	}
	switch f.typ.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return fmt.Errorf("must be an integer, got %q", s)
		}
		v.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", s)
		}
		v.SetBool(b)
	default:
		panic("config: unsupported field type " + f.typ.String())
	}
	return nil
}

// format renders the field's value of c for messages and diffs.
func (f *field) format(c *Config) string {
	v := f.value(c).Interface()
	switch x := v.(type) {
	case []string:
		return "[" + strings.Join(x, ",") + "]"
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// splitList splits a comma-separated list, trimming blanks and dropping
// empty items.
func splitList(s string) []string {
	out := []string{}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// tomlTypeName names the TOML type of a decoded value for messages.
func tomlTypeName(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the float %v", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case time.Time:
		return "a datetime"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// suggest returns a close known key for a misspelt one, or "".
func suggest(section, name string) string {
	best, bestD := "", 3
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	for _, f := range theSchema.fields {
		if section != "" && f.section != section {
			continue
		}
		cand := f.name
		if section == "" {
			cand = f.section
		}
		if norm(cand) == norm(name) {
			return cand
		}
		if d := editDistance(cand, name); d < bestD {
			best, bestD = cand, d
		}
	}
	return best
}

func suggestSection(name string) string {
	secs := make([]string, 0, len(theSchema.sections))
	for s := range theSchema.sections {
		secs = append(secs, s)
	}
	sort.Strings(secs)
	best, bestD := "", 3
	for _, s := range secs {
		if strings.EqualFold(s, name) {
			return s
		}
		if d := editDistance(s, name); d < bestD {
			best, bestD = s, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, capped for long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
