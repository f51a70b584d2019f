#!/usr/bin/env bash
# Rebuilds every committed .wasm from its source. A dev-time tool: CI and
# `go test ./...` use the committed binaries and never need to run it.
#   Go examples:  modules/examples/NAME/*.go  -> modules/NAME.wasm  (needs only Go)
#   WAT sources:  modules/examples/NAME/*.wat -> modules/NAME.wasm
#                 wasmhost/testdata/*.wat     -> wasmhost/testdata/*.wasm
#   (WAT needs wat2wasm from wabt: apt-get install -y wabt)
#   AssemblyScript: modules/examples/NAME/NAME.ts -> modules/examples/NAME/NAME.wasm
#                 (not loaded by default; needs Node.js: npx fetches assemblyscript
#                 $ASC_VERSION; set ASC to an installed asc to skip the fetch)
# modules/wasm.sums records the toolchain and the sha256 of each Go-built
# module; wasmhost's TestCommittedModulesMatchSources rebuilds the Go
# examples and compares when the same Go toolchain is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0

sums=modules/wasm.sums
echo "# go: $(go env GOVERSION)" > "$sums"
for dir in modules/examples/*/; do
	name=$(basename "$dir")
	if ls "$dir"*.go >/dev/null 2>&1; then
		GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -ldflags='-s -w' \
			-o "modules/$name.wasm" "./$dir"
		(cd modules && sha256sum "$name.wasm") >> "$sums"
	elif ls "$dir"*.wat >/dev/null 2>&1; then
		wat2wasm --enable-all "$dir$name.wat" -o "modules/$name.wasm"
	fi
	echo "built modules/$name.wasm"
done
# AssemblyScript examples (the flags are also in modules/build_test.go).
ASC_VERSION=0.28.20
asc=${ASC:-"npx --yes -p assemblyscript@$ASC_VERSION asc"}
for ts in modules/examples/*/*.ts; do
	[ -e "$ts" ] || continue
	$asc "$ts" -O3 --runtime stub --noAssert --use abort= -o "${ts%.ts}.wasm"
	(cd "$(dirname "$ts")" && sha256sum "$(basename "${ts%.ts}").wasm" > "$(basename "${ts%.ts}").wasm.sha256")
	echo "built ${ts%.ts}.wasm"
done
for wat in wasmhost/testdata/*.wat; do
	wat2wasm --enable-all "$wat" -o "${wat%.wat}.wasm"
	echo "built ${wat%.wat}.wasm"
done
