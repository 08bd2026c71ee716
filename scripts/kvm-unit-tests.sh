#!/usr/bin/env bash
# Runs kvm-unit-tests' own harness (./run_tests.sh) with KvmActors as its QEMU:
#   scripts/kvm-unit-tests.sh KUT_DIR [run_tests.sh options, e.g. -g vmexit or test names]
# KUT_DIR is a built x86_64 checkout (./configure && make). Builds kvmactors (Release) and points
# QEMU at the kvmactors-qemu wrapper installed beside it. Not run in CI (it needs the checkout).
set -euo pipefail
if [ $# -lt 1 ] || [ ! -x "$1/run_tests.sh" ]; then
    echo "usage: $0 KUT_DIR [run_tests.sh options]   (KUT_DIR: a built kvm-unit-tests checkout)" >&2
    exit 2
fi
kut=$(cd "$1" && pwd)
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
dotnet build -c Release "$repo/src/Host" -nologo -v quiet >&2
wrapper="$repo/src/Host/bin/Release/net10.0/kvmactors-qemu"
cd "$kut"
QEMU="$wrapper" ACCEL=kvm ./run_tests.sh -v "$@"
