package config

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// flagSpec maps a command-line flag to a configuration key.
type flagSpec struct {
	name, short, key, usage, typ, def string
}

// flagSpecs are the seed's flags (short and long) plus the extras; every one
// of them sets one key, with the same parsing as the environment.
var flagSpecs = []flagSpec{
	{"port", "p", "server.port", "HTTP server port", "int", strconv.Itoa(DefaultPort)},
	{"buffer-size", "b", "ring.buffer_size", "ring buffer size in slots (power of two)", "int", "1024"},
	{"wait-strategy", "w", "ring.wait_strategy", "wait strategy: " + strings.Join(waitStrategies, "|"), "string", "blocking"},
	{"cluster", "c", "cluster.enabled", "enable cluster mode", "bool", "false"},
	{"seed-nodes", "s", "cluster.seeds", "comma-separated seed nodes (host:port) for clustering", "strings", ""},
	{"node-id", "n", "node.id", "unique node identifier (default <hostname>-<port>)", "string", ""},
	{"data-dir", "", "node.data_dir", "state directory (default ./data, or ./data-<port> when the port is not 8080)", "string", ""},
	{"modules-dir", "", "modules.dir", "directory of WASM handler modules", "string", "./modules"},
	{"log-level", "", "log.level", "log level: " + strings.Join(logLevels, "|"), "string", "info"},
}

// rawFlag keeps a flag's text; conversion and checks happen later, exactly
// as for environment variables, so that every bad flag is reported at once.
type rawFlag struct {
	typ, def string
	list     bool
	vals     []string
}

func (f *rawFlag) String() string {
	if len(f.vals) == 0 {
		return f.def
	}
	return strings.Join(f.vals, ",")
}

func (f *rawFlag) Set(s string) error {
	if f.list {
		f.vals = append(f.vals, s)
	} else {
		f.vals = []string{s}
	}
	return nil
}

func (f *rawFlag) Type() string { return f.typ }

// cliValues are the parsed command-line values.
type cliValues struct {
	raw                  map[string]*rawFlag
	file                 string
	help, version, check bool
}

func newFlagSet() (*pflag.FlagSet, *cliValues) {
	fs := pflag.NewFlagSet("badbatch", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	cl := &cliValues{raw: map[string]*rawFlag{}}
	for _, s := range flagSpecs {
		v := &rawFlag{typ: s.typ, def: s.def, list: s.typ == "strings"}
		cl.raw[s.name] = v
		fl := fs.VarPF(v, s.name, s.short, s.usage)
		if s.typ == "bool" {
			fl.NoOptDefVal = "true"
		}
	}
	fs.StringVar(&cl.file, "config", "", "TOML configuration file (default $"+EnvConfigFile+", else built-in defaults)")
	boolFlag(fs, &cl.check, "check-config", "", "validate the configuration, print it with secrets redacted, and exit (0 valid, 1 invalid)")
	boolFlag(fs, &cl.help, "help", "h", "print help information")
	boolFlag(fs, &cl.version, "version", "V", "print version information")
	return fs, cl
}

// boolValue is a switch flag. It does not implement pflag's boolFlag
// interface, only so that the help text does not show "[=true|false]".
type boolValue struct{ p *bool }

func (b boolValue) String() string { return strconv.FormatBool(*b.p) }
func (b boolValue) Type() string   { return "bool" }
func (b boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("must be true or false")
	}
	*b.p = v
	return nil
}

func boolFlag(fs *pflag.FlagSet, p *bool, name, short, usage string) {
	fs.VarPF(boolValue{p}, name, short, usage).NoOptDefVal = "true"
}

// Usage returns the command-line help text.
func Usage() string {
	fs, _ := newFlagSet()
	return usage(fs)
}

func usage(fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString("BadBatch: an edge event appliance on an LMAX disruptor ring.\n\n")
	b.WriteString("USAGE:\n    badbatch [OPTIONS]\n\nOPTIONS:\n")
	b.WriteString(fs.FlagUsages())
	b.WriteString(`
CONFIGURATION:
    Precedence: flags > environment > TOML file (--config) > built-in defaults.
    Every TOML key can also be set as BADBATCH_<SECTION>_<KEY>, e.g.
    BADBATCH_SERVER_PORT=9000, BADBATCH_RING_WAIT_STRATEGY=yielding,
    BADBATCH_API_PUBLISH_TOKENS=tok1,tok2 (lists are comma-separated).
    Durations are strings with a unit ("250ms"); sizes are bytes or "64KiB".
    See config/badbatch.example.toml for every key, its default and meaning.
`)
	return b.String()
}

// flagParseError turns a pflag parse error into an *Error naming the flag.
func flagParseError(err error) error {
	e := &Error{usage: true, Msg: err.Error(), Err: err}
	var ne *pflag.NotExistError
	var vr *pflag.ValueRequiredError
	var iv *pflag.InvalidValueError
	var is *pflag.InvalidSyntaxError
	switch {
	case errors.As(err, &ne):
		e.Flag, e.Msg = "--"+ne.GetSpecifiedName(), "unknown flag; see --help"
		if ne.GetSpecifiedShortnames() != "" {
			e.Flag = "-" + ne.GetSpecifiedName()
		}
	case errors.As(err, &vr):
		e.Flag = flagDisplay(vr.GetFlag())
		e.Msg = "needs a value"
	case errors.As(err, &iv):
		e.Flag = flagDisplay(iv.GetFlag())
		e.Msg = fmt.Sprintf("invalid value %q: %v", iv.GetValue(), errors.Unwrap(iv))
	case errors.As(err, &is):
		e.Flag = is.GetSpecifiedFlag()
		e.Msg = "bad flag syntax; see --help"
	}
	return e
}

func flagDisplay(f *pflag.Flag) string {
	if f == nil {
		return "?"
	}
	if f.Shorthand != "" {
		return "-" + f.Shorthand + "/--" + f.Name
	}
	return "--" + f.Name
}
