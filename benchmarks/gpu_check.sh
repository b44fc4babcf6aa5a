#!/usr/bin/env bash
# The GPU figures of issue 21 in two short calls, for when a GPU is lent:
#
#   bash benchmarks/gpu_check.sh steps     # ~5 min: steps, ours vs naive
#                                          # (vs the authors' with PRACTISE_REPO)
#   bash benchmarks/gpu_check.sh compress  # ~7 min: compress(drop=3) of ResNet-50
#                                          # at 224 px from 500 images, defaults
#
# Each part writes markdown and logs under $OUT (default out/gpu) and the
# device, driver and versions to $OUT/device.txt. It expects keras, torch
# and jax to import; the authors' steps need a checkout of
# github.com/DoctorKey/Practise at $PRACTISE_REPO (the device has no network).
# Steps are timed by `benchmarks/speed.py`: synchronised after every step on
# both sides, the order rotated each round, every side's images copied from
# the host per step.
set -u
part=${1:?"usage: gpu_check.sh steps|compress"}
out=${OUT:-out/gpu}
mkdir -p "$out"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import keras, torch, jax; print('keras', keras.__version__, 'torch', torch.__version__, 'jax', jax.__version__)"
} > "$out/device.txt" 2>&1

run() {  # run NAME BACKEND SECONDS ARGS...
  local name=$1 backend=$2 seconds=$3
  shift 3
  KERAS_BACKEND=$backend timeout "$seconds" python -m benchmarks.speed "$@" \
    --output "$out/$name.md" > "$out/$name.log" 2>&1
  echo "$name: exit $?"
}

case $part in
  steps)
    run steps_torch torch 150 --steps 20 --warmup 5 --blocks 1.2,3.2 \
      ${PRACTISE_REPO:+--authors_repo "$PRACTISE_REPO"}
    run steps_jax jax 150 --steps 20 --warmup 5 --blocks 1.2,3.2
    ;;
  compress)
    for backend in jax torch; do
      run "compress_$backend" "$backend" 200 --input_size 224 --steps 1 \
        --warmup 1 --blocks 3.2 --drop 3.2 --compress --compress_steps 0 \
        --compress_images 500
    done
    ;;
  *)
    echo "unknown part '$part': expected steps or compress" >&2
    exit 2
    ;;
esac
