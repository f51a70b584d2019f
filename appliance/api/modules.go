package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/badbatch/badbatch/wasmhost"
)

// Processor is the WASM handler stage as the publish path sees it
// (ack=processed).
type Processor interface {
	// Expect announces a publish that will wait for processing: the stage
	// keeps the outputs of the events it processes until Done.
	Expect()
	// Done ends what Expect started.
	Done()
	// WaitProcessed returns once every event up to seq was processed by
	// every module, or ctx ends.
	WaitProcessed(ctx context.Context, seq int64) error
	// Outputs calls fn for each output of event seq (valid during the
	// call) and reports whether they are still held.
	Outputs(seq int64, fn func(ProcessedOutput)) bool
}

// ProcessedOutput is one module output of a published event.
type ProcessedOutput struct {
	Kind    string // emit, forward, dead-letter
	Module  string
	Version string
	Stream  string // the output stream it landed in
	Error   string // dead-letter only
	Key     []byte
	Data    []byte
}

// maxUpload bounds an uploaded module (manifest + wasm) independently of
// the body limit's use for events.
const maxManifest = 1 << 20

func (s *Server) registry() (*wasmhost.Registry, error) {
	if s.opts.Modules == nil {
		return nil, apiErr(fiber.StatusNotFound, "no WASM host on this node")
	}
	return s.opts.Modules, nil
}

// moduleName reads and validates the :name parameter (copied: fiber's
// strings alias reused buffers).
func moduleName(c *fiber.Ctx) (string, error) {
	name := strings.Clone(c.Params("name"))
	if !wasmhost.ValidName(name) {
		return "", apiErr(fiber.StatusBadRequest, fmt.Sprintf("invalid module name %q: want [a-z0-9][a-z0-9_-]{0,62}", name))
	}
	return name, nil
}

// moduleTarget is what the per-module endpoints start with: the node's
// registry (404 without a WASM host) and the validated :name.
func (s *Server) moduleTarget(c *fiber.Ctx) (*wasmhost.Registry, string, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, "", err
	}
	name, err := moduleName(c)
	if err != nil {
		return nil, "", err
	}
	return reg, name, nil
}

func (s *Server) listModules(c *fiber.Ctx) error {
	reg, err := s.registry()
	if err != nil {
		return err
	}
	st := reg.Status()
	if st == nil {
		st = []wasmhost.ModuleStatus{}
	}
	graph, gerr := reg.Graph()
	body := fiber.Map{"modules": st, "digest": reg.Digest(), "graph": graph, "dir": s.opts.ModulesDir}
	if gerr != nil {
		body["graph_error"] = gerr.Error()
	}
	return c.JSON(body)
}

func (s *Server) moduleStatus(name string) (wasmhost.ModuleStatus, bool) {
	for _, st := range s.opts.Modules.Status() {
		if st.Name == name {
			return st, true
		}
	}
	return wasmhost.ModuleStatus{}, false
}

func (s *Server) getModule(c *fiber.Ctx) error {
	_, name, err := s.moduleTarget(c)
	if err != nil {
		return err
	}
	st, ok := s.moduleStatus(name)
	if !ok {
		return apiErr(fiber.StatusNotFound, "no module "+name)
	}
	return c.JSON(st)
}

// upload is a module as sent by a client.
type upload struct {
	Manifest []byte
	Wasm     []byte
}

// readUpload accepts multipart/form-data (parts "manifest" and "wasm", as
// files or fields) or JSON {"manifest": "<TOML>", "wasm": "<base64>"}.
func readUpload(c *fiber.Ctx) (upload, error) {
	ct := strings.ToLower(string(c.Request().Header.ContentType()))
	var u upload
	switch {
	case strings.HasPrefix(ct, "multipart/form-data"):
		form, err := c.MultipartForm()
		if err != nil {
			return u, apiErr(fiber.StatusBadRequest, "invalid multipart body: "+err.Error())
		}
		part := func(name string, limit int64) ([]byte, error) {
			if fhs := form.File[name]; len(fhs) > 0 {
				return readPart(fhs[0], limit)
			}
			if vs := form.Value[name]; len(vs) > 0 {
				return []byte(vs[0]), nil
			}
			return nil, apiErr(fiber.StatusBadRequest, fmt.Sprintf("multipart body has no %q part", name))
		}
		if u.Manifest, err = part("manifest", maxManifest); err != nil {
			return u, err
		}
		if u.Wasm, err = part("wasm", 1<<30); err != nil {
			return u, err
		}
	case strings.HasPrefix(ct, "application/json"):
		var j struct {
			Manifest *string `json:"manifest"`
			Wasm     *string `json:"wasm"`
		}
		dec := json.NewDecoder(strings.NewReader(string(c.Body())))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			return u, apiErr(fiber.StatusBadRequest, "invalid JSON body: "+err.Error()+` (want {"manifest": "<TOML>", "wasm": "<base64>"})`)
		}
		if j.Manifest == nil || j.Wasm == nil {
			return u, apiErr(fiber.StatusBadRequest, `JSON body needs "manifest" (TOML text) and "wasm" (base64)`)
		}
		w, err := base64.StdEncoding.DecodeString(*j.Wasm)
		if err != nil {
			return u, apiErr(fiber.StatusBadRequest, "wasm is not valid base64: "+err.Error())
		}
		u.Manifest, u.Wasm = []byte(*j.Manifest), w
	default:
		return u, apiErr(fiber.StatusUnsupportedMediaType, "upload a module as multipart/form-data (parts manifest and wasm) or application/json ({\"manifest\": \"<TOML>\", \"wasm\": \"<base64>\"})")
	}
	if len(u.Manifest) > maxManifest {
		return u, apiErr(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("manifest larger than %d bytes", maxManifest))
	}
	if len(u.Wasm) == 0 {
		return u, apiErr(fiber.StatusBadRequest, "empty wasm")
	}
	return u, nil
}

func readPart(fh *multipart.FileHeader, limit int64) ([]byte, error) {
	f, err := fh.Open()
	if err != nil {
		return nil, apiErr(fiber.StatusBadRequest, "read upload part: "+err.Error())
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, apiErr(fiber.StatusBadRequest, "read upload part: "+err.Error())
	}
	if int64(len(b)) > limit {
		return nil, apiErr(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("upload part %q larger than %d bytes", fh.Filename, limit))
	}
	return b, nil
}

// putModule installs a module under the name in the path: validated by a
// canary load, then written atomically and swapped in. A bad module is 422
// with the reason; the running version stays.
func (s *Server) putModule(c *fiber.Ctx) error {
	_, name, err := s.moduleTarget(c)
	if err != nil {
		return err
	}
	u, err := readUpload(c)
	if err != nil {
		return err
	}
	return s.install(c, name, u)
}

// postModule installs a module named by its manifest.
func (s *Server) postModule(c *fiber.Ctx) error {
	if _, err := s.registry(); err != nil {
		return err
	}
	u, err := readUpload(c)
	if err != nil {
		return err
	}
	man, err := wasmhost.ParseManifest(u.Manifest, "manifest")
	if err != nil {
		return apiErr(fiber.StatusUnprocessableEntity, "invalid manifest: "+err.Error())
	}
	return s.install(c, man.Name, u)
}

func (s *Server) install(c *fiber.Ctx, name string, u upload) error {
	reg := s.opts.Modules
	_, existed := s.opts.Modules.Stage(name)
	if err := os.MkdirAll(s.opts.ModulesDir, 0o755); err != nil {
		return fmt.Errorf("create modules directory: %w", err)
	}
	if err := reg.Install(context.Background(), name, u.Manifest, u.Wasm); err != nil {
		if errors.Is(err, wasmhost.ErrClosed) {
			return apiErr(fiber.StatusServiceUnavailable, "node is shutting down")
		}
		s.log.Warn("module upload rejected", "module", name, "err", err)
		return apiErr(fiber.StatusUnprocessableEntity, "module rejected (the running version, if any, stays): "+err.Error(), "module", name)
	}
	s.log.Info("module installed over REST", "module", name, "replaced", existed)
	st, _ := s.moduleStatus(name)
	if existed {
		c.Status(fiber.StatusOK)
	} else {
		c.Status(fiber.StatusCreated)
	}
	return c.JSON(st)
}

func (s *Server) deleteModule(c *fiber.Ctx) error {
	reg, name, err := s.moduleTarget(c)
	if err != nil {
		return err
	}
	if err := reg.Remove(context.Background(), name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return apiErr(fiber.StatusNotFound, "no module "+name)
		}
		return fmt.Errorf("remove module: %w", err)
	}
	s.log.Info("module removed over REST", "module", name)
	return c.JSON(fiber.Map{"removed": name})
}

func (s *Server) reloadModule(c *fiber.Ctx) error {
	reg, name, err := s.moduleTarget(c)
	if err != nil {
		return err
	}
	_, loaded := reg.Stage(name)
	if _, serr := os.Stat(filepath.Join(s.opts.ModulesDir, name+".toml")); serr != nil && !loaded {
		return apiErr(fiber.StatusNotFound, "no module "+name)
	}
	if err := reg.Reload(context.Background(), name); err != nil {
		return apiErr(fiber.StatusUnprocessableEntity, "reload failed (the running version, if any, stays): "+err.Error(), "module", name)
	}
	st, ok := s.moduleStatus(name)
	if !ok {
		return c.JSON(fiber.Map{"removed": name})
	}
	return c.JSON(st)
}

// moduleFiles reads module name's manifest (and its wasm when withWasm).
func (s *Server) moduleFiles(name string, withWasm bool) (*wasmhost.Manifest, []byte, []byte, error) {
	path := filepath.Join(s.opts.ModulesDir, name+".toml")
	man, err := wasmhost.LoadManifest(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, apiErr(fiber.StatusNotFound, "no module "+name)
		}
		return nil, nil, nil, apiErr(fiber.StatusUnprocessableEntity, "module files are invalid: "+err.Error())
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	if !withWasm {
		return man, text, nil, nil
	}
	wasm, err := os.ReadFile(man.WasmPath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, apiErr(fiber.StatusNotFound, "module "+name+" has no "+man.Wasm)
		}
		return nil, nil, nil, fmt.Errorf("read wasm: %w", err)
	}
	return man, text, wasm, nil
}

// moduleWasm serves the module's .wasm as stored in the modules directory
// (what a peer installs in a fleet rollout), with X-Module-Version and
// X-Module-SHA256 describing exactly these bytes.
func (s *Server) moduleWasm(c *fiber.Ctx) error {
	_, name, err := s.moduleTarget(c)
	if err != nil {
		return err
	}
	man, _, wasm, err := s.moduleFiles(name, true)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(wasm)
	c.Set("X-Module-Version", man.Version)
	c.Set("X-Module-SHA256", hex.EncodeToString(sum[:]))
	c.Set(fiber.HeaderContentType, "application/wasm")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+man.Wasm+`"`)
	return c.Send(wasm)
}

// moduleManifest serves the module's manifest TOML as stored.
func (s *Server) moduleManifest(c *fiber.Ctx) error {
	_, name, err := s.moduleTarget(c)
	if err != nil {
		return err
	}
	man, text, _, err := s.moduleFiles(name, false)
	if err != nil {
		return err
	}
	c.Set("X-Module-Version", man.Version)
	c.Set(fiber.HeaderContentType, "application/toml; charset=utf-8")
	return c.Send(text)
}

// allowedMethods finds the methods registered for path, matching route
// parameters (":name") against one path segment each.
func allowedMethods(allowed map[string][]string, path string) ([]string, bool) {
	if ms, ok := allowed[path]; ok {
		return ms, true
	}
	segs := strings.Split(path, "/")
	for route, ms := range allowed {
		rs := strings.Split(route, "/")
		if len(rs) != len(segs) {
			continue
		}
		match := true
		for i := range rs {
			if !strings.HasPrefix(rs[i], ":") && rs[i] != segs[i] || strings.HasPrefix(rs[i], ":") && segs[i] == "" {
				match = false
				break
			}
		}
		if match {
			return ms, true
		}
	}
	return nil, false
}
