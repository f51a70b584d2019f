package rollout

import (
	"context"
	"fmt"

	"github.com/badbatch/badbatch/appliance/cluster"
	"github.com/badbatch/badbatch/wasmhost"
)

// maxVersionLen is the longest version the cluster announces (longer ones
// are shortened in the announcement; the sha256 identifies the module).
const maxVersionLen = 64

// RegistryLocal adapts a *wasmhost.Registry to Local: List reports the loaded
// modules (manifest name and version, wasm sha256), Install and Remove are
// the registry's (validated with a canary instance, written by atomic rename,
// swapped in at a batch boundary).
func RegistryLocal(reg *wasmhost.Registry) Local { return registryLocal{reg} }

type registryLocal struct{ reg *wasmhost.Registry }

func (l registryLocal) List() []cluster.ModuleInfo {
	stages := l.reg.Stages()
	out := make([]cluster.ModuleInfo, 0, len(stages))
	for _, st := range stages {
		m := st.Module()
		if m == nil {
			continue
		}
		v := m.Manifest().Version
		if len(v) > maxVersionLen {
			v = v[:maxVersionLen]
		}
		out = append(out, cluster.ModuleInfo{Name: st.Name(), Version: v, SHA256: m.SHA256()})
	}
	return out
}

func (l registryLocal) Install(ctx context.Context, name string, manifest, wasm []byte) error {
	if err := l.reg.Install(ctx, name, manifest, wasm); err != nil {
		return fmt.Errorf("install module %s: %w", name, err)
	}
	return nil
}

func (l registryLocal) Remove(ctx context.Context, name string) error {
	if err := l.reg.Remove(ctx, name); err != nil {
		return fmt.Errorf("remove module %s: %w", name, err)
	}
	return nil
}
