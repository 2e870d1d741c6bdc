#!/usr/bin/env bash
# aenerf-bench on a GPU machine without internet, from wheels carried along.
#
#   scripts/gpu/bench.sh wheels [DIR]            where PyPI is reachable: download the wheels of
#                                                scripts/gpu/requirements.txt for the GPU machine's Python
#                                                (PY, default 3.12; Linux x86-64) into DIR (default .whl)
#   scripts/gpu/bench.sh run [DIR] [ARGS...]     on the GPU machine: install DIR's wheels and this checkout into
#                                                SITE (default /tmp/aenerf-gpu-site) next to the Python that holds
#                                                CUDA torch (PYTHON, default python3), then run
#                                                `aenerf-bench --gpu --output OUTPUT ARGS...`
#
# Nothing is fetched in `run`: pip works offline (--no-index) and the project builds without isolation.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
action=$1
shift
dir=$ROOT/.whl
if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then  # a first argument that is not an option names the folder
  dir=$1
  shift
fi

case $action in
wheels)
  mkdir -p "$dir"
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PY:-3.12}" --implementation cp \
    "${platforms[@]}" -d "$dir" -r "$ROOT/scripts/gpu/requirements.txt"
  echo "wheels in $dir: $(ls "$dir"/*.whl | wc -l) files, $(du -sh "$dir" | cut -f1)"
  ;;
run)
  python=${PYTHON:-python3}
  site=${SITE:-/tmp/aenerf-gpu-site}
  output=${OUTPUT:-$ROOT/outputs/bench_gpu}
  [ -d "$dir" ] || { echo "bench.sh: error: no wheel folder $dir (run 'bench.sh wheels' where PyPI is reachable)" >&2; exit 2; }
  mkdir -p "$site"
  shopt -s nullglob
  wheels=("$dir"/*.whl)
  if [ ${#wheels[@]} -gt 0 ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
  fi
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$site" "$ROOT"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  "$python" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (no CUDA device)")'
  "$python" -m aenerf_ns.scripts.bench --gpu --output "$output" "$@"
  ;;
*)
  usage
  ;;
esac
