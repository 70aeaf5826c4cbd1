#!/usr/bin/env bash
# Run HERE, with the package registries in reach: fills benchmarks/gpu/wheels/ for run.sh on a GPU machine without
# network. Builds mmcl's wheel from this checkout and downloads every wheel in wheels.txt for CPython
# $PYTHON_VERSIONS (default 3.11 3.12 3.13; pandas 3 has no 3.10 wheels) on x86-64 Linux. Never torch, torchvision
# or torchaudio: the GPU machine's own are the ones measured.
#
#   benchmarks/gpu/prepare.sh                          # PYTHON=python3.12 PYTHON_VERSIONS=3.12 to narrow it
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WHEELS=$HERE/wheels
PY=${PYTHON:-python3}

rm -rf "$WHEELS"
mkdir -p "$WHEELS"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$ROOT"
# The commit the wheel was built from, for the benchmark's record ("-dirty": with uncommitted changes).
git -C "$ROOT" describe --always --dirty > "$WHEELS/mmcl-commit.txt" 2>/dev/null || echo unknown > "$WHEELS/mmcl-commit.txt"

# pip matches manylinux tags exactly, so every tag these packages publish under is listed.
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 \
           manylinux_2_5 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
for version in ${PYTHON_VERSIONS:-3.11 3.12 3.13}; do
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp --python-version "$version" \
        "${platforms[@]}" --dest "$WHEELS" -r "$HERE/wheels.txt"
done

if ls "$WHEELS" | grep -Eiq '^(torch|torchvision|torchaudio|triton|nvidia)[-_]'; then
    echo "prepare.sh: a torch-stack wheel reached $WHEELS; run.sh must never replace the machine's own" >&2
    exit 1
fi
echo "$(ls "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1) in $WHEELS (mmcl $(cat "$WHEELS/mmcl-commit.txt"))"
