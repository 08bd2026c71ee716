#!/usr/bin/env bash
# Runs kvm-unit-tests' own harness (./run_tests.sh) with KvmActors as its QEMU:
#   scripts/kvm-unit-tests.sh [--reference] KUT_DIR [run_tests.sh options, e.g. -g vmexit or test names]
# KUT_DIR is a built x86_64 checkout (./configure && make). Builds kvmactors (Release) and points
# QEMU at the kvmactors-qemu wrapper installed beside it; --reference runs the same suite with the
# system's QEMU instead (QEMU=... in the environment picks another binary), for comparing verdicts.
# Each result line is followed by "(N.Ns)": the seconds since the previous result (the harness runs
# one test at a time, so that is the test's wall time including the harness's own probes).
# Not run in CI (it needs the checkout).
set -euo pipefail
reference=no
if [ "${1:-}" = "--reference" ]; then reference=yes; shift; fi
if [ $# -lt 1 ] || [ ! -x "$1/run_tests.sh" ]; then
    echo "usage: $0 [--reference] KUT_DIR [run_tests.sh options]   (KUT_DIR: a built kvm-unit-tests checkout)" >&2
    exit 2
fi
kut=$(cd "$1" && pwd)
shift
if [ "$reference" = yes ]; then
    qemu=${QEMU:-$(command -v qemu-system-x86_64)}
else
    repo=$(cd "$(dirname "$0")/.." && pwd)
    dotnet build -c Release "$repo/src/Host" -nologo -v quiet >&2
    qemu="$repo/src/Host/bin/Release/net10.0/kvmactors-qemu"
fi
cd "$kut"
last=$(date +%s%N)
QEMU="$qemu" ACCEL=kvm ./run_tests.sh -v "$@" | while IFS= read -r line; do
    line=$(printf '%s' "$line" | sed 's/\x1b\[[0-9;]*m//g')
    printf '%s\n' "$line"
    case "$line" in
        PASS\ *|FAIL\ *|SKIP\ *)
            now=$(date +%s%N)
            printf '    (%d.%ds)\n' $(((now - last) / 1000000000)) $(((now - last) / 100000000 % 10))
            last=$now ;;
    esac
done
