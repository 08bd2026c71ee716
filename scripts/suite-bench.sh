#!/usr/bin/env bash
# One process for a whole suite against one process per guest: the wall time of
#   kvmactors test --jobs J  F1 ... FN
# against running the same N guest files one `kvmactors run` at a time (as a shell loop or a make-style harness
# would), alternating the two over R rounds. The guest files cycle through example guests of hocon/guests (each
# with its guest.expect block). Prints each round and the medians.
#
#   scripts/suite-bench.sh [N=20] [JOBS=2] [ROUNDS=3]
#   KVMACTORS="kvmactors" scripts/suite-bench.sh        # the installed tool instead of the build's kvmactors.dll
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
JOBS=${2:-2}
ROUNDS=${3:-3}
if [[ -z "${KVMACTORS:-}" ]]; then
  for c in Release Debug; do
    if [[ -f src/Host/bin/$c/net10.0/kvmactors.dll ]]; then KVMACTORS="dotnet src/Host/bin/$c/net10.0/kvmactors.dll"; break; fi
  done
fi
: "${KVMACTORS:?build src/Host first (dotnet build -c Release src/Host) or set KVMACTORS}"
examples=(seed-demo debug-exit long protected multiboot fw-cfg smp-hello)
files=()
for ((i = 0; i < N; i++)); do files+=("hocon/guests/${examples[i % ${#examples[@]}]}.conf"); done

now() { date +%s.%N; }
suite_times=() ; run_times=()
for ((r = 1; r <= ROUNDS; r++)); do
  t0=$(now)
  $KVMACTORS test --jobs "$JOBS" "${files[@]}" 2>/dev/null || { echo "kvmactors test failed (status $?)" >&2; exit 1; }
  t1=$(now)
  for f in "${files[@]}"; do
    $KVMACTORS run "$f" >/dev/null 2>&1 || true   # the examples end with their own debug-exit statuses
  done
  t2=$(now)
  s=$(echo "$t1 - $t0" | bc) ; q=$(echo "$t2 - $t1" | bc)
  suite_times+=("$s") ; run_times+=("$q")
  printf 'round %d: kvmactors test --jobs %d: %6.2f s   %d x kvmactors run: %6.2f s   (%.1fx)\n' "$r" "$JOBS" "$s" "$N" "$q" "$(echo "$q / $s" | bc -l)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ms=$(median "${suite_times[@]}") ; mr=$(median "${run_times[@]}")
printf 'median of %d rounds, %d guest files: kvmactors test --jobs %d %.2f s, sequential kvmactors run %.2f s (%.2f s each): %.1fx; load average %s\n' \
  "$ROUNDS" "$N" "$JOBS" "$ms" "$mr" "$(echo "$mr / $N" | bc -l)" "$(echo "$mr / $ms" | bc -l)" "$(cut -d' ' -f1-3 /proc/loadavg)"
