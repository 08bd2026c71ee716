#!/usr/bin/env bash
# Issue 14's done-when scenario, as a new user runs it from the README ("A fleet of hosts"):
# three local kvm-host nodes on loopback ports, twenty guests created through node 1, listed through node 2,
# node 2 drained (live migration), node 3 killed (SIGKILL); then every guest must be accounted for: running on a
# surviving node, those of node 3 with a record saying how they came back (restarted-from-checkpoint or rebooted).
# Prints the migration times (per VM and the whole drain) and the recovery time (SIGKILL -> all of node 3's VMs
# running again). Exit 0 when every guest is accounted for, 1 otherwise, 2 on a usage or start-up problem.
#
#   scripts/fleet-demo.sh                 # the built program (src/Host/bin/Debug/net10.0/kvmactors)
#   KVMACTORS=kvmactors scripts/fleet-demo.sh    # the installed tool
#   PORT=4051 VMS=20 CHECKPOINTED=10 scripts/fleet-demo.sh
# Half the guests (CHECKPOINTED) have guest.fleet.checkpoint-interval = 5s, so both kinds of recovery show.
# The nodes run with the default failure detection (kvmactors.fleet: acceptable-heartbeat-pause 3s, stable-after 20s).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
K=${KVMACTORS:-$repo/src/Host/bin/Debug/net10.0/kvmactors}
PORT=${PORT:-4051}
VMS=${VMS:-20}
CHECKPOINTED=${CHECKPOINTED:-$((VMS / 2))}
GUEST=$repo/hocon/guests/spin.conf
command -v "$K" >/dev/null 2>&1 || [ -x "$K" ] || { echo "fleet-demo: no kvmactors at $K (build it: dotnet build src/Host, or set KVMACTORS)" >&2; exit 2; }
for tool in curl jq; do command -v $tool >/dev/null || { echo "fleet-demo: needs $tool" >&2; exit 2; }; done

work=$(mktemp -d /tmp/kvmactors-fleet-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
api() { local n=$1; shift; curl -s --unix-socket "$work/n$n.sock" "$@"; }
node() { echo "akka.tcp://kvmactors@127.0.0.1:$((PORT + $1 - 1))"; }

echo "fleet-demo: $VMS guests ($CHECKPOINTED checkpointed every 5s) on 3 nodes, ports $PORT..$((PORT + 2)); $(uptime | sed 's/.*load/load/')"
# Started as the README shows (all in one folder, so that they share the default checkpoint folder snapshots/fleet-checkpoints).
cd "$work"
start_node() {
  local i=$1; local seed=()
  [ "$i" -gt 1 ] && seed=(--seed "127.0.0.1:$PORT")
  "$K" serve --socket "$work/n$i.sock" --cluster "127.0.0.1:$((PORT + i - 1))" "${seed[@]}" >"$work/n$i.out" 2>"$work/n$i.err" &
  pids[$i]=$!
}
t0=$(now)
start_node 1
for _ in $(seq 100); do [ -S "$work/n1.sock" ] && api 1 -f http://x/healthz >/dev/null 2>&1 && break; sleep 0.1; done
start_node 2
start_node 3
formed=""
for _ in $(seq 600); do
  up=$(api 1 http://x/nodes 2>/dev/null | jq '[.[] | select(.status == "Up" and .freeVcpus != null)] | length' 2>/dev/null || echo 0)
  [ "$up" = 3 ] && { formed=$(now); break; }
  sleep 0.1
done
[ -n "$formed" ] || { echo "fleet-demo: the three nodes did not form a cluster within 60 s; logs in $work" >&2; tail -5 "$work"/n*.err >&2; trap - EXIT; exit 2; }
echo "cluster of 3 formed $(ms "$t0" "$formed") ms after the first start"

# Twenty guests through node 1.
t=$(now)
for i in $(seq "$VMS"); do
  sets=()
  [ "$i" -le "$CHECKPOINTED" ] && sets=(--set guest.fleet.checkpoint-interval=5s)
  "$K" vm --socket "$work/n1.sock" create "$GUEST" --name "g$i" "${sets[@]}" >/dev/null
done
echo "created $VMS guests through node 1 in $(ms "$t" "$(now)") ms"
"$K" vm --socket "$work/n2.sock" list --json >"$work/before.json"
echo "listed through node 2: $(jq length "$work/before.json") VMs; per node: $(jq -r 'group_by(.node) | map("\(.[0].node | sub(".*@"; "")): \(length)") | join(", ")' "$work/before.json")"
[ "$(jq length "$work/before.json")" = "$VMS" ] || { echo "fleet-demo: the list through node 2 does not have all $VMS guests" >&2; exit 1; }
sleep 6 # a first checkpoint of each checkpointed guest

# Drain node 2 through node 1.
t=$(now)
api 1 -X POST "http://x/nodes/127.0.0.1:$((PORT + 1))/drain" >"$work/drain.json"
drain_wall=$(ms "$t" "$(now)")
echo "drain of node 2: $(jq -r '"\(.migrated) migrated, \(.notMoved) not moved, drainMs \(.drainMs)"' "$work/drain.json") ($drain_wall ms through the API)"
jq -r '.vms[] | "  \(.id) \(.name) -> \((.to // "-") | sub(".*@"; "")): \(if .state == "not-moved" then "NOT MOVED (\(.status)): \(.reason)" else "downtime \(.downtimeMs) ms, migration \(.totalMs) ms, \(.rounds) round(s), shard handoff \(.handoffMs) ms" end)"' "$work/drain.json"
jq -r '[.vms[] | select(.downtimeMs != null)] | if length > 0 then "  per VM: downtime \(map(.downtimeMs) | min)..\(map(.downtimeMs) | max) ms (mean \((map(.downtimeMs) | add / length * 10 | round / 10))), migration \(map(.totalMs) | min)..\(map(.totalMs) | max) ms (mean \((map(.totalMs) | add / length * 10 | round / 10)))" else empty end' "$work/drain.json"

# Kill node 3: its VMs come back on node 1 (node 2 is draining, so no placement chooses it).
api 1 http://x/vms >"$work/mid.json"
victims=$(jq -r --arg n "$(node 3)" '[.[] | select(.node == $n) | .id] | join(" ")' "$work/mid.json")
echo "node 3 runs $(wc -w <<<"$victims") VM(s); SIGKILL to node 3"
t=$(now)
kill -KILL "${pids[3]}"
wait "${pids[3]}" 2>/dev/null || true
unset 'pids[3]'
recovered=""
for _ in $(seq 1200); do
  api 1 http://x/vms >"$work/now.json" 2>/dev/null || true
  left=$(jq -r --arg ids "$victims" --arg dead "$(node 3)" '($ids | split(" ")) as $v | [.[] | select((.id as $i | $v | index($i)) and .state == "running" and .node != $dead)] | length' "$work/now.json" 2>/dev/null || echo 0)
  [ "$left" = "$(wc -w <<<"$victims")" ] && { recovered=$(now); break; }
  sleep 0.1
done
if [ -n "$recovered" ]; then echo "recovery: all $(wc -w <<<"$victims") VM(s) of node 3 running again $(ms "$t" "$recovered") ms after the SIGKILL"
else echo "recovery: not all of node 3's VMs were running again within 120 s" >&2; fi

# Every guest accounted for: running on node 1 or 3... on a surviving node; node 3's with how they came back.
missing=0
echo "accounting (through node 2):"
for id in $(jq -r '.[].id' "$work/before.json"); do
  v=$(api 2 "http://x/vms/$id")
  state=$(jq -r '.state // "?"' <<<"$v"); at=$(jq -r '(.fleet.node // .node // "?") | sub(".*@"; "")' <<<"$v")
  how=$(jq -r '.fleet.recovery.kind // "-"' <<<"$v")
  if [ "$state" != running ] || { [[ " $victims " == *" $id "* ]] && [ "$how" = - ]; }; then missing=$((missing + 1)); flag=" <- NOT ACCOUNTED FOR"; else flag=""; fi
  printf '  %s %-4s %-8s on %-16s %s%s\n' "$id" "$(jq -r '.name' <<<"$v")" "$state" "$at" "$how" "$flag"
done
kinds=$(for id in $victims; do api 2 "http://x/vms/$id" | jq -r '.fleet.recovery.kind // "none"'; done | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
echo "node 3's VMs came back as: ${kinds:-none}"
if [ "$missing" -eq 0 ]; then echo "fleet-demo: all $VMS guests accounted for"; exit 0; fi
echo "fleet-demo: $missing guest(s) not accounted for; logs kept in $work" >&2
trap - EXIT
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
exit 1
