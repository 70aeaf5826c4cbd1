#!/usr/bin/env bash
# Run THERE, on the GPU machine (no network needed), after prepare.sh filled benchmarks/gpu/wheels/: installs what
# the benchmark needs and the machine lacks into a folder of its own, put first on PYTHONPATH, so the machine's
# Python environment stays as it was; checks that torch, torchvision and torchaudio are still the machine's own;
# runs bench.py with the arguments given.
#
#   benchmarks/gpu/run.sh [--out DIR] [--workers N] [--budget-s S]    # PYTHON=... to pick the interpreter
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WHEELS=$HERE/wheels
PY=${PYTHON:-python3}
SITE=${MMCL_BENCH_SITE:-/tmp/mmcl-bench-site}

[ -f "$WHEELS/mmcl-commit.txt" ] || { echo "run.sh: $WHEELS is empty: run prepare.sh where pip has network" >&2; exit 2; }
torch_stack() {
    "$PY" -c 'import torch, torchvision, torchaudio
for m in (torch, torchvision, torchaudio): print(f"{m.__name__}=={m.__version__}  # {m.__file__}")'
}
before=$(torch_stack) || { echo "run.sh: $PY lacks torch, torchvision or torchaudio (mmcl imports all three); they are never installed from here" >&2; exit 2; }

# Which wheels this environment needs: pip's resolver against what is installed, offline, installing nothing. The
# torch stack is pinned to the installed versions, so a requirement they do not meet fails here, before any change.
rm -rf "$SITE" && mkdir -p "$SITE"
"$PY" -c 'from importlib.metadata import version  # as pip sees them: 2.14.1 where torch says 2.14.1+cu130
for name in ("torch", "torchvision", "torchaudio"): print(f"{name}=={version(name)}")' > "$SITE/constraints.txt"
"$PY" -m pip install --dry-run --quiet --no-index --find-links "$WHEELS" --report "$SITE/plan.json" \
    -r "$HERE/requirements.txt" -c "$SITE/constraints.txt"
mapfile -t needed < <("$PY" -c 'import json, sys, urllib.parse, urllib.request
for item in json.load(open(sys.argv[1]))["install"]:
    print(urllib.request.url2pathname(urllib.parse.urlparse(item["download_info"]["url"]).path))' "$SITE/plan.json")
echo "installing into $SITE: mmcl ${needed[*]##*/}"
# mmcl without its dependencies: its metadata pins torch==2.14.1, which this machine need not have.
"$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE/packages" \
    "$WHEELS"/mmcl-*.whl "${needed[@]}"
export PYTHONPATH="$SITE/packages${PYTHONPATH:+:$PYTHONPATH}"

after=$(torch_stack)
if [ "$before" != "$after" ]; then
    printf 'run.sh: the torch stack changed, aborting:\n%s\n-> %s\n' "$before" "$after" >&2
    exit 1
fi
echo "$after"
exec "$PY" "$HERE/bench.py" "$@"
