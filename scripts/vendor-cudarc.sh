#!/usr/bin/env bash
# Regenerate vendor/cudarc: cudarc from crates.io with one change, its
# `dynamic-linking` feature made to load the CUDA libraries at run time
# (what its `dynamic-loading` feature does) instead of linking them.
#
# Why: candle-core asks cudarc for `dynamic-linking`, so a `--features cuda`
# binary would name libcuda, cuBLAS, cuRAND and NVRTC as load-time
# dependencies and could not even start on a machine without a GPU driver
# (the dynamic loader stops it before main). Loaded at run time, they are
# opened when a CUDA device is first opened; patchbench checks they are there
# first (src/model/device_cuda.rs) and falls back to the CPU or says what is
# missing. cudarc refuses both features at once, and Cargo cannot drop a
# feature a dependency asks for, so the switch is made in cudarc's build
# script. Patching cudarc (not candle-core) keeps the change out of builds
# without `cuda`, which never compile cudarc.
#
# Usage: scripts/vendor-cudarc.sh [VERSION]   (default: the version in
# vendor/cudarc/Cargo.toml). Run it after a candle upgrade that changes the
# cudarc version, then `cargo update -p cudarc`. Only the bindings candle-core
# uses are kept (driver, cublas, cublaslt, curand, nvrtc, and the top-level
# files), with the licences, README and the manifest without its examples.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "vendor-cudarc: error: $*" >&2; exit 1; }

dest=vendor/cudarc
version="${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$dest/Cargo.toml" 2>/dev/null | head -n 1)}"
[ -n "$version" ] || die "no version given and none found in $dest/Cargo.toml"

# Let cargo download the crate (a throwaway project that depends on it).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/p/src"
touch "$tmp/p/src/lib.rs"
printf '[package]\nname = "p"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncudarc = { version = "=%s", default-features = false, features = ["driver"] }\n' \
    "$version" >"$tmp/p/Cargo.toml"
src="$(cd "$tmp/p" && cargo metadata --format-version 1 |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc"))')"
src="$(dirname "$src")"
[ -d "$src/src" ] || die "cudarc $version source not found at $src"

rm -rf "$dest"
mkdir -p "$dest/src"
cp "$src"/src/*.rs "$dest/src/"
for m in driver cublas cublaslt curand nvrtc; do
    cp -r "$src/src/$m" "$dest/src/$m"
done
cp "$src"/LICENSE-* "$src/README.md" "$dest/"
# The vendored code keeps upstream's formatting: `cargo fmt --all` would
# otherwise check it with our rustfmt.
printf 'disable_all_formatting = true\n' >"$dest/rustfmt.toml"
python3 - "$src" "$dest" <<'PY'
import re, sys
src, dest = sys.argv[1], sys.argv[2]
text = open(f"{src}/Cargo.toml").read()
parts = re.split(r'(?m)^(?=\[)', text)
drop = re.compile(r'^\[\[(example|test|bench)\]\]|^\[dev-dependencies')
header = ("# Vendored by scripts/vendor-cudarc.sh: cudarc from crates.io whose\n"
          "# `dynamic-linking` loads the CUDA libraries at run time (see that script).\n")
open(f"{dest}/Cargo.toml", "w").write(header + "".join(p for p in parts if not drop.match(p)))

build = open(f"{src}/build.rs").read()
old = '    #[cfg(feature = "dynamic-linking")]\n    dynamic_linking(major, minor);\n'
assert build.count(old) == 1, "cudarc's build.rs no longer calls dynamic_linking as expected"
new = ('    // Vendored for patchbench (scripts/vendor-cudarc.sh): `dynamic-linking`,\n'
       '    // which candle-core asks for, loads the libraries at run time instead.\n'
       '    #[cfg(feature = "dynamic-linking")]\n'
       '    println!("cargo:rustc-cfg=feature=\\"dynamic-loading\\"");\n')
open(f"{dest}/build.rs", "w").write(build.replace(old, new))
PY
echo "vendor-cudarc: wrote $dest (cudarc $version)" >&2
