package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// EnvPrefix starts every environment variable the configuration reads.
const EnvPrefix = "BADBATCH_"

// EnvConfigFile names the TOML file when --config is not given.
const EnvConfigFile = "BADBATCH_CONFIG"

// Loaded is the result of Load: the effective configuration plus what the
// command line asked for. It keeps the arguments and environment it was
// loaded with so that Reload can re-read the file with the same overlay.
type Loaded struct {
	Config      Config // effective configuration (valid when Load returned no error)
	File        string // TOML file read ("" when none)
	CheckOnly   bool   // --check-config: validate, print Config.Redacted().TOML(), exit 0/1
	ShowHelp    bool   // -h/--help: print Usage, exit 0
	ShowVersion bool   // -V/--version: print the version, exit 0
	Usage       string // the help text (always set, also on errors)

	args    []string
	environ []string
	host    func() (string, error)
}

// Load parses args (without argv[0]) with pflag, reads the TOML file named
// by --config (or $BADBATCH_CONFIG), overlays the BADBATCH_<SECTION>_<KEY>
// environment variables from environ (in os.Environ form) and then the
// flags. Precedence: flags > environment > file > defaults. Everything is
// validated and every problem is returned at once (errors.Join of *Error).
//
// Errors from the command line satisfy errors.Is(err, ErrUsage) (exit 2).
// The returned *Loaded is non-nil even on error so that Usage can be
// printed; its Config must not be used then. With -h or -V the file and
// environment are not read and Config holds the defaults.
func Load(args []string, environ []string) (*Loaded, error) {
	return load(args, environ, os.Hostname)
}

func load(args, environ []string, host func() (string, error)) (*Loaded, error) {
	l := &Loaded{args: slices.Clone(args), environ: slices.Clone(environ), host: host}
	flags, cl := newFlagSet()
	l.Usage = usage(flags)
	if err := flags.Parse(args); err != nil {
		return l, flagParseError(err)
	}
	if flags.NArg() > 0 {
		return l, &Error{usage: true, Msg: fmt.Sprintf("unexpected argument %q (all options are flags; see --help)", flags.Arg(0))}
	}
	l.ShowHelp, l.ShowVersion, l.CheckOnly = cl.help, cl.version, cl.check
	if l.ShowHelp || l.ShowVersion {
		l.Config = defaults(hostname(host))
		return l, nil
	}
	l.File = cl.file
	if !flags.Changed("config") {
		l.File = lookupEnv(environ, EnvConfigFile)
	} else if strings.TrimSpace(cl.file) == "" {
		return l, &Error{Flag: "--config", Msg: "needs a file name"}
	}
	cfg, err := l.resolve(flags, cl)
	l.Config = cfg
	return l, err
}

// Reload re-reads the TOML file and applies the same environment and flags
// as the original Load, for SIGHUP. On error the caller keeps its current
// configuration; the returned Config is then not valid.
func (l *Loaded) Reload() (Config, error) {
	flags, cl := newFlagSet()
	if err := flags.Parse(l.args); err != nil {
		return Config{}, flagParseError(err)
	}
	return l.resolve(flags, cl)
}

// origin records where a key's value came from, for error locations.
type origin struct {
	line int    // file line (file origin)
	env  string // variable name (env origin)
	flag string // flag name (flag origin)
}

// resolver builds one Config and collects every problem on the way.
type resolver struct {
	file    string
	origins map[string]origin // explicitly set keys
	bad     map[string]bool   // keys whose value could not be converted
	errs    []error
}

func (l *Loaded) resolve(flags *pflag.FlagSet, cl *cliValues) (Config, error) {
	host := hostname(l.host)
	cfg := defaults(host)
	r := &resolver{file: l.File, origins: map[string]origin{}, bad: map[string]bool{}}
	if l.File != "" {
		r.readFile(&cfg, l.File)
	}
	r.applyEnv(&cfg, l.environ)
	r.applyFlags(&cfg, flags, cl)
	r.derive(&cfg, host)
	validate(&cfg, r.report)
	sortErrors(r.errs)
	return cfg, errors.Join(r.errs...)
}

// sortErrors orders problems for reading: flags, then environment, then the
// file by line; the order within each group is otherwise kept.
func sortErrors(errs []error) {
	rank := func(err error) (int, int) {
		e, ok := err.(*Error)
		switch {
		case !ok:
			return 3, 0
		case e.Flag != "" || e.usage:
			return 0, 0
		case e.Env != "":
			return 1, 0
		default:
			return 2, e.Line
		}
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		ga, la := rank(a)
		gb, lb := rank(b)
		if ga != gb {
			return ga - gb
		}
		return la - lb
	})
}

// errAt builds an error located where key was set.
func (r *resolver) errAt(key, msg string) *Error {
	e := &Error{Key: key, Msg: msg}
	o, set := r.origins[key]
	switch {
	case set && o.flag != "":
		e.Flag = o.flag
	case set && o.env != "":
		e.Env = o.env
	default:
		e.File, e.Line = r.file, o.line
	}
	return e
}

// report is validate's sink: the problem is located at the first key that
// was set explicitly (for checks involving several keys), else the first.
func (r *resolver) report(keys []string, msg string) {
	for _, k := range keys {
		if r.bad[k] {
			return // already reported as unconvertible
		}
	}
	key := keys[0]
	for _, k := range keys {
		if _, ok := r.origins[k]; ok {
			key = k
			break
		}
	}
	r.errs = append(r.errs, r.errAt(key, msg))
}

// readFile decodes the TOML file into cfg, reporting syntax errors, unknown
// sections and keys, and values of the wrong type, each with its line.
func (r *resolver) readFile(cfg *Config, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err // the path is already in the message
		}
		r.errs = append(r.errs, &Error{File: path, Msg: fmt.Sprintf("cannot read config file: %v", cause), Err: err})
		return
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		e := &Error{File: path, Msg: err.Error(), Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Key, e.Msg = pe.Position.Line, pe.LastKey, pe.Message
			if pe.Usage != "" {
				e.Msg += " (" + strings.TrimSpace(pe.Usage) + ")"
			}
		}
		r.errs = append(r.errs, e)
		return
	}
	line := keyLiner(&md)
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		sec := k[0]
		if sec == "sinks" {
			if !seen[sec] {
				seen[sec] = true
				r.readSinks(cfg, raw[sec], data, path, line(k[:1], k))
			}
			continue
		}
		if !seen[sec] {
			seen[sec] = true
			if !theSchema.sections[sec] {
				msg := fmt.Sprintf("unknown section [%s]", sec)
				if s := suggestSection(sec); s != "" {
					msg += fmt.Sprintf(" (did you mean [%s]?)", s)
				}
				r.errs = append(r.errs, &Error{File: path, Line: line(k[:1], k), Key: Key(k[:1]), Msg: msg})
			} else if _, ok := raw[sec].(map[string]any); !ok {
				r.errs = append(r.errs, &Error{File: path, Line: line(k[:1], k), Key: sec,
					Msg: fmt.Sprintf("[%s] must be a table, not %s", sec, tomlTypeName(raw[sec]))})
			}
		}
		if len(k) < 2 || !theSchema.sections[sec] {
			continue
		}
		tbl, ok := raw[sec].(map[string]any)
		if !ok {
			continue
		}
		dotted := sec + "." + k[1]
		if seen[dotted] {
			continue
		}
		seen[dotted] = true
		ln := line(k[:2], k)
		f, known := theSchema.byKey[dotted]
		if !known {
			msg := fmt.Sprintf("unknown key %q in [%s]", k[1], sec)
			if s := suggest(sec, k[1]); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			r.errs = append(r.errs, &Error{File: path, Line: ln, Key: Key(k[:2]), Msg: msg})
			continue
		}
		r.origins[dotted] = origin{line: ln}
		if err := f.setTOML(cfg, tbl[k[1]]); err != nil {
			r.bad[dotted] = true
			r.errs = append(r.errs, &Error{File: path, Line: ln, Key: dotted, Msg: err.Error()})
		}
	}
}

// Key renders a TOML key path with BurntSushi's quoting rules.
func Key(k []string) string { return toml.Key(k).String() }

// keyLiner returns a function giving the 1-based line of a key in the
// decoded document, trying each candidate key in turn; 0 when unknown.
//
// BurntSushi/toml v1.6 records every key's position in MetaData but offers
// no exported accessor, so it is read with reflection (read-only). The test
// TestLineNumbers pins this: if a toml upgrade changes the layout, it fails
// rather than silently losing line numbers.
func keyLiner(md *toml.MetaData) func(keys ...toml.Key) int {
	ki := reflect.ValueOf(md).Elem().FieldByName("keyInfo")
	return func(keys ...toml.Key) int {
		if !ki.IsValid() || ki.Kind() != reflect.Map || ki.Type().Key().Kind() != reflect.String {
			return 0
		}
		for _, k := range keys {
			e := ki.MapIndex(reflect.ValueOf(k.String()))
			if !e.IsValid() || e.Kind() != reflect.Struct {
				continue
			}
			p := e.FieldByName("pos")
			if !p.IsValid() || p.Kind() != reflect.Struct {
				continue
			}
			ln := p.FieldByName("Line")
			if ln.IsValid() && ln.Kind() == reflect.Int && ln.Int() > 0 {
				return int(ln.Int())
			}
		}
		return 0
	}
}

// applyEnv overlays BADBATCH_<SECTION>_<KEY> variables. A variable that
// starts with a known section's prefix but names no key is an error (a typo
// would otherwise be ignored silently); other BADBATCH_* names are left to
// their owners (e.g. test switches).
func (r *resolver) applyEnv(cfg *Config, environ []string) {
	seen := map[string]bool{}
	vars := make([][2]string, 0)
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || seen[name] {
			continue
		}
		seen[name] = true // the first occurrence wins, as with os.Getenv
		vars = append(vars, [2]string{name, val})
	}
	slices.SortFunc(vars, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	for _, v := range vars {
		name, val := v[0], v[1]
		f, ok := theSchema.byEnv[name]
		if !ok {
			rest := strings.TrimPrefix(name, EnvPrefix)
			for sec := range theSchema.sections {
				if p := strings.ToUpper(sec) + "_"; strings.HasPrefix(rest, p) {
					msg := "unknown configuration variable"
					if s := suggest(sec, strings.ToLower(strings.TrimPrefix(rest, p))); s != "" {
						msg += fmt.Sprintf(" (did you mean %s?)", theSchema.byKey[sec+"."+s].env)
					}
					r.errs = append(r.errs, &Error{Env: name, Msg: msg})
				}
			}
			continue
		}
		r.origins[f.key] = origin{env: name}
		delete(r.bad, f.key)
		if err := f.setString(cfg, val); err != nil {
			r.bad[f.key] = true
			r.errs = append(r.errs, &Error{Env: name, Key: f.key, Msg: err.Error()})
		}
	}
}

// applyFlags overlays the flags the user actually gave (pflag's Changed).
func (r *resolver) applyFlags(cfg *Config, flags *pflag.FlagSet, cl *cliValues) {
	for _, spec := range flagSpecs {
		fl := flags.Lookup(spec.name)
		if fl == nil || !fl.Changed {
			continue
		}
		f := theSchema.byKey[spec.key]
		name := "--" + spec.name
		if spec.short != "" {
			name = "-" + spec.short + "/--" + spec.name
		}
		r.origins[f.key] = origin{flag: name}
		delete(r.bad, f.key)
		raw := cl.raw[spec.name]
		if err := f.setString(cfg, strings.Join(raw.vals, ",")); err != nil {
			r.bad[f.key] = true
			r.errs = append(r.errs, &Error{Flag: name, Key: f.key, Msg: err.Error()})
		}
	}
}

// derive fills the defaults that depend on server.port: node.id,
// node.data_dir and cluster.bind_port, each only when not set explicitly.
func (r *resolver) derive(cfg *Config, host string) {
	port := cfg.Server.Port
	if r.bad["server.port"] || port < 1 || port > 65535 {
		return
	}
	if _, set := r.origins["node.id"]; !set {
		cfg.Node.ID = defaultNodeID(host, port)
	}
	if _, set := r.origins["node.data_dir"]; !set && port != DefaultPort {
		cfg.Node.DataDir = DefaultDataDir + "-" + strconv.Itoa(port)
	}
	if _, set := r.origins["cluster.bind_port"]; !set {
		if bp := DefaultClusterPort + port - DefaultPort; bp >= 1 && bp <= 65535 {
			cfg.Cluster.BindPort = bp
		}
	}
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
