// Package modules holds the handler modules the appliance loads by default
// (NAME.wasm + NAME.toml), their sources under examples/, the Go guest SDK
// (sdk/) and the ABI document (ABI.md). This file only holds the test that
// the committed binaries match their sources.
package modules

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// readSums parses wasm.sums (written by build.sh).
func readSums(t *testing.T) (goVersion string, sums map[string]string) {
	t.Helper()
	f, err := os.Open("wasm.sums")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "# go: "); ok {
			goVersion = v
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 2 {
			sums[fields[1]] = fields[0]
		}
	}
	return goVersion, sums
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestCommittedModulesMatchSums: every Go example has a committed .wasm and
// manifest, and the .wasm is the one build.sh recorded.
func TestCommittedModulesMatchSums(t *testing.T) {
	_, sums := readSums(t)
	dirs, err := filepath.Glob("examples/*/main.go")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no Go examples: %v", err)
	}
	for _, d := range dirs {
		name := filepath.Base(filepath.Dir(d))
		if _, err := os.Stat(name + ".toml"); err != nil {
			t.Errorf("%s: no manifest: %v", name, err)
		}
		want, ok := sums[name+".wasm"]
		if !ok {
			t.Errorf("%s.wasm missing from wasm.sums: run modules/build.sh", name)
			continue
		}
		if got := fileSum(t, name+".wasm"); got != want {
			t.Errorf("%s.wasm does not match wasm.sums: run modules/build.sh", name)
		}
	}
}

// TestCommittedModulesMatchSources rebuilds the Go examples (as build.sh
// does) and checks the committed binaries are identical. Go builds are
// reproducible for one toolchain, so this runs only with the toolchain
// recorded in wasm.sums, and not in -short mode. WAT modules are checked if
// wat2wasm is installed.
func TestCommittedModulesMatchSources(t *testing.T) {
	if testing.Short() {
		t.Skip("rebuilds the example modules")
	}
	goVersion, sums := readSums(t)
	if goVersion != runtime.Version() {
		t.Skipf("wasm.sums was made with %s, this is %s", goVersion, runtime.Version())
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	for name := range sums {
		name = strings.TrimSuffix(name, ".wasm")
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, name+".wasm")
			cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-ldflags=-s -w", "-o", out, "./examples/"+name)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("build %s: %v\n%s", name, err, b)
				return
			}
			if fileSum(t, out) != fileSum(t, name+".wasm") {
				t.Errorf("%s.wasm is stale: run modules/build.sh and commit", name)
			}
		}()
	}
	wg.Wait()
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Log("wat2wasm not installed: WAT modules not checked")
		return
	}
	wats, _ := filepath.Glob("examples/*/*.wat")
	testWats, _ := filepath.Glob("../wasmhost/testdata/*.wat")
	for _, w := range append(wats, testWats...) {
		name := strings.TrimSuffix(filepath.Base(w), ".wat")
		out := filepath.Join(dir, name+".wasm")
		committed := name + ".wasm"
		if strings.HasPrefix(w, "../") {
			committed = strings.TrimSuffix(w, ".wat") + ".wasm"
		}
		if b, err := exec.Command(wat2wasm, "--enable-all", w, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", w, err, b)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(committed)
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run modules/build.sh and commit", committed)
		}
	}
}

// TestAssemblyScriptModules: every AssemblyScript example has its built
// .wasm, the sha256 build.sh recorded and a manifest; with an asc compiler
// at hand ($ASC, or asc on the PATH; CI has none) it is rebuilt with
// build.sh's flags and compared.
func TestAssemblyScriptModules(t *testing.T) {
	sources, err := filepath.Glob("examples/*/*.ts")
	if err != nil || len(sources) == 0 {
		t.Fatalf("no AssemblyScript examples: %v", err)
	}
	asc := os.Getenv("ASC")
	if asc == "" {
		asc, _ = exec.LookPath("asc")
	}
	for _, src := range sources {
		base := strings.TrimSuffix(src, ".ts")
		name := filepath.Base(base)
		if _, err := os.Stat(base + ".toml"); err != nil {
			t.Errorf("%s: no manifest: %v", name, err)
		}
		b, err := os.ReadFile(base + ".wasm.sha256")
		if err != nil {
			t.Errorf("%s: no recorded sha256 (run modules/build.sh): %v", name, err)
			continue
		}
		fields := strings.Fields(string(b))
		if len(fields) != 2 || fields[1] != name+".wasm" {
			t.Errorf("%s.wasm.sha256: malformed %q", name, b)
			continue
		}
		if got := fileSum(t, base+".wasm"); got != fields[0] {
			t.Errorf("%s.wasm does not match %s.wasm.sha256: run modules/build.sh", name, name)
		}
		if asc == "" || testing.Short() {
			t.Logf("%s: no asc compiler ($ASC or PATH): not rebuilt", name)
			continue
		}
		out := filepath.Join(t.TempDir(), name+".wasm")
		if b, err := exec.Command(asc, src, "-O3", "--runtime", "stub", "--noAssert", "--use", "abort=", "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("asc %s: %v\n%s", src, err, b)
		}
		if fileSum(t, out) != fields[0] {
			t.Errorf("%s.wasm is stale: run modules/build.sh and commit", name)
		}
	}
}
