#!/usr/bin/env bash
# The Adult job of scripts/bench_job.py over an emulated WAN, against the same job on loopback.
#
# Every party process runs in its own network namespace, the coordinator (and the runner) in another; each
# party's link to the coordinator has 50 ms RTT, 1% loss per packet and direction, 50 Mbit/s per direction.
# With netem in the kernel the namespaces are joined by veth pairs with `tc qdisc netem` on both ends; if it
# is missing (CONFIG_NET_SCH_NETEM unset, as on this development VM) each namespace gets a TUN device and
# scripts/wan_link.py forwards the packets in userspace with the same delay, loss and rate.
# Prints bench_job.py's stage table for both runs and the WAN/loopback ratio of "coordinator start ->
# results delivered" (target <= 2).
#
#     sudo scripts/bench_wan.sh [--parties 3] [--repeat 2] [--rtt-ms 50] [--loss 0.01] [--rate-mbit 50]
#         [--link netem|tun]
set -euo pipefail

PARTIES=3 REPEAT=2 RTT_MS=50 LOSS=0.01 RATE_MBIT=50 LINK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --parties) PARTIES="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --rtt-ms) RTT_MS="$2"; shift 2 ;;
    --loss) LOSS="$2"; shift 2 ;;
    --rate-mbit) RATE_MBIT="$2"; shift 2 ;;
    --link) LINK="$2"; shift 2 ;;
    *) echo "bench_wan: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench_wan: needs root (network namespaces)" >&2; exit 2; }
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
PREFIX="crwan$$"
OUT="/tmp/cleanroom_bench_wan"
DELAY_MS=$(python3 -c "print($RTT_MS / 2)")
LOSS_PCT=$(python3 -c "print($LOSS * 100)")
NAMESPACES=("${PREFIX}_c")
for i in $(seq 1 "$PARTIES"); do NAMESPACES+=("${PREFIX}_p$i"); done
LINK_PID=""

cleanup() {
  [ -n "$LINK_PID" ] && kill "$LINK_PID" 2>/dev/null && wait "$LINK_PID" 2>/dev/null || true
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

netem_available() {
  ip link add "${PREFIX}_t0" type veth peer name "${PREFIX}_t1" || return 1
  local ok=0
  tc qdisc add dev "${PREFIX}_t0" root netem delay 1ms 2>/dev/null || ok=1
  ip link del "${PREFIX}_t0" 2>/dev/null || true
  return $ok
}

for ns in "${NAMESPACES[@]}"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
if [ -z "$LINK" ]; then
  if netem_available; then LINK=netem; else LINK=tun; fi
fi
NETEM="delay ${DELAY_MS}ms loss ${LOSS_PCT}% rate ${RATE_MBIT}mbit limit 1000"
if [ "$LINK" = netem ]; then
  for i in $(seq 1 "$PARTIES"); do
    ip link add "${PREFIX}c$i" type veth peer name "${PREFIX}p$i"
    ip link set "${PREFIX}c$i" netns "${PREFIX}_c"
    ip link set "${PREFIX}p$i" netns "${PREFIX}_p$i"
    ip -n "${PREFIX}_c" addr add "10.99.$i.254/24" dev "${PREFIX}c$i"
    ip -n "${PREFIX}_p$i" addr add "10.99.$i.1/24" dev "${PREFIX}p$i"
    ip -n "${PREFIX}_c" link set "${PREFIX}c$i" up
    ip -n "${PREFIX}_p$i" link set "${PREFIX}p$i" up
    ip netns exec "${PREFIX}_c" tc qdisc add dev "${PREFIX}c$i" root netem $NETEM
    ip netns exec "${PREFIX}_p$i" tc qdisc add dev "${PREFIX}p$i" root netem $NETEM
  done
else
  for k in "${!NAMESPACES[@]}"; do
    ns="${NAMESPACES[$k]}"
    ip -n "$ns" tuntap add dev wan0 mode tun
    ip -n "$ns" addr add "10.99.$k.1/16" dev wan0
    ip -n "$ns" link set wan0 up
  done
  "$PY" "$REPO/scripts/wan_link.py" --delay-ms "$DELAY_MS" --loss "$LOSS" --rate-mbit "$RATE_MBIT" \
    "${NAMESPACES[@]}" &
  LINK_PID=$!
  sleep 1
fi
echo "bench_wan: $PARTIES parties, RTT ${RTT_MS} ms, loss $LOSS, ${RATE_MBIT} Mbit/s per direction ($LINK link)"

echo "== loopback =="
nice "$PY" "$REPO/scripts/bench_job.py" --parties "$PARTIES" --repeat "$REPEAT" --out "$OUT/loopback" \
  --json "$OUT/loopback.json"
echo "== WAN =="
ip netns exec "${PREFIX}_c" nice "$PY" "$REPO/scripts/bench_job.py" --parties "$PARTIES" --repeat "$REPEAT" \
  --out "$OUT/wan" --netns-prefix "$PREFIX" --json "$OUT/wan.json"
"$PY" - "$OUT/loopback.json" "$OUT/wan.json" <<'EOF'
import json, statistics, sys
loop, wan = (json.load(open(path)) for path in sys.argv[1:3])
a = statistics.median(r["to_delivered"] for r in loop)
b = statistics.median(r["to_delivered"] for r in wan)
print(f"coordinator start -> results delivered: loopback {a:.2f} s, WAN {b:.2f} s, WAN/loopback {b / a:.2f}x")
for name in ("handshake", "round_0", "round_1", "round_2", "eval_stage", "eval_utility", "deliver"):
    x = statistics.median(next(s["wall"] for s in r["stages"] if s["stage"] == name) for r in loop)
    y = statistics.median(next(s["wall"] for s in r["stages"] if s["stage"] == name) for r in wan)
    print(f"  {name:<14} loopback {x:6.2f} s   WAN {y:6.2f} s   (+{y - x:.2f} s)")
EOF
