package wasmhost

import (
	"fmt"
	"slices"
	"strings"
)

// Order arranges modules into layers by their manifests' after lists: every
// module of layer i runs after all the modules it names, which are in
// earlier layers; modules of one layer may run in parallel (diamonds are
// allowed). It fails on an unknown name or a cycle. Names within a layer
// are sorted.
func Order(mans []*Manifest) ([][]string, error) {
	byName := map[string]*Manifest{}
	for _, m := range mans {
		if _, dup := byName[m.Name]; dup {
			return nil, fmt.Errorf("module %s defined twice", m.Name)
		}
		byName[m.Name] = m
	}
	for _, m := range mans {
		for _, a := range m.After {
			if _, ok := byName[a]; !ok {
				return nil, fmt.Errorf("module %s runs after %s, which is not loaded", m.Name, a)
			}
		}
	}
	level := map[string]int{}
	var layers [][]string
	for len(level) < len(byName) {
		var layer []string
		for name, m := range byName {
			if _, done := level[name]; done {
				continue
			}
			ready := true
			for _, a := range m.After {
				if l, ok := level[a]; !ok || l >= len(layers) {
					ready = false
					break
				}
			}
			if ready {
				layer = append(layer, name)
			}
		}
		if len(layer) == 0 {
			var rest []string
			for name := range byName {
				if _, done := level[name]; !done {
					rest = append(rest, name)
				}
			}
			slices.Sort(rest)
			return nil, fmt.Errorf("modules form a cycle through their after lists: %s", strings.Join(rest, ", "))
		}
		slices.Sort(layer)
		for _, n := range layer {
			level[n] = len(layers)
		}
		layers = append(layers, layer)
	}
	return layers, nil
}
