#!/usr/bin/env bash
# `bench run` against edge and against Kamailio on the same machine, with the
# same two `bench uas` backends and the same ramp: the CPS limit of each.
#
#   bench/ramp_edge_vs_kamailio.sh [--start CPS] [--step CPS] [--step-s S]
#                                  [--kamailio-children N] [--out DIR]
#
# Both proxies get core 0 (edge: one shard pinned there; Kamailio: all its
# processes under `taskset -c 0`, with N UDP children, default 4); the UAC and
# the backends are pinned to core 1. Kamailio runs tests/kamailio/proxy.cfg
# (tm, rr, dispatcher round-robin over the backends, no probes). Prints each
# `bench run`'s steps and `edge_cps_limit=N`, `kamailio_cps_limit=N`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

START=1000
STEP=1000
STEP_S=5
CHILDREN=4
OUT=""
while (($#)); do
  case "$1" in
    --start) START="$2"; shift 2 ;;
    --step) STEP="$2"; shift 2 ;;
    --step-s) STEP_S="$2"; shift 2 ;;
    --kamailio-children) CHILDREN="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

# shellcheck source=../tests/packages.sh
source tests/packages.sh
ensure_packages "kamailio kamailio"
cargo build --release -q -p edge -p bench
BENCH="$ROOT/target/release/bench"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT/kamailio"
KPID=""
cleanup() { [[ -n "$KPID" ]] && kill -- -"$KPID" 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RAMP=(--start "$START" --step "$STEP" --step-s "$STEP_S" --first-core 1 --uas-first-core 1 --drain-s 10)

# --- Kamailio ---------------------------------------------------------------
kport=$(free_port); a=$(free_port); b=$(free_port)
printf '1 sip:127.0.0.1:%s\n1 sip:127.0.0.1:%s\n' "$a" "$b" >"$OUT/kamailio/dispatcher.list"
setsid taskset -c 0 kamailio -DD -E -f tests/kamailio/proxy.cfg -L /usr/lib/x86_64-linux-gnu/kamailio/modules \
  -l "udp:127.0.0.1:$kport" -n "$CHILDREN" -m 512 -M 8 -w "$OUT/kamailio" -Y "$OUT/kamailio" \
  -P "$OUT/kamailio/kamailio.pid" -a no -A "DS_LIST=\"$OUT/kamailio/dispatcher.list\"" -A "LOG_LEVEL=1" \
  >"$OUT/kamailio/kamailio.log" 2>&1 &
KPID=$!
kout=$("$BENCH" run --target "127.0.0.1:$kport" --backend-ports "$a,$b" --out "$OUT/kamailio" "${RAMP[@]}" 2>"$OUT/kamailio/bench.err")
echo "$kout" | grep '^step' | sed 's/^/kamailio: /'
cleanup; KPID=""

# --- edge -------------------------------------------------------------------
eout=$("$BENCH" run --edge-cores 0 --out "$OUT/edge" "${RAMP[@]}" 2>"$OUT/edge.err")
echo "$eout" | grep '^step' | sed 's/^/edge: /'

echo "kamailio_cps_limit=$(echo "$kout" | tail -n1 | sed 's/^cps_limit=//')"
echo "edge_cps_limit=$(echo "$eout" | tail -n1 | sed 's/^cps_limit=//')"
echo "reports: $OUT/kamailio/report.svg $OUT/edge/report.svg"
