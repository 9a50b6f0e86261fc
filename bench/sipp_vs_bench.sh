#!/usr/bin/env bash
# The highest rate a load generator holds against its own UAS on this
# machine, with 0 failed calls: SIPp UAC -> SIPp UAS, then bench uac ->
# bench uas, side by side.
#
#   bench/sipp_vs_bench.sh [--start CPS] [--step CPS] [--max CPS] [--seconds S]
#
# Each rate runs S seconds (default 5). A rate holds for SIPp when every
# call succeeded and the run took at most 10 % (+0.5 s of start-up) longer
# than it should (a generator that falls behind its own schedule has hit its
# limit); for bench when at most 0.1 % of the calls failed and p99 setup
# stayed under 200 ms (bench's ramp rule; its pacing is open loop, so a
# lagging generator shows as latency). SIPp: uac_basic_rr / uas_basic_rr from tests/scenarios, -r at
# each rate. bench: `bench ramp` against `bench uas` with the same steps.
# Prints `sipp_limit=N`, `bench_limit=N` and their ratio.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

START=1000
STEP=1000
MAX=60000
SECONDS_PER_RATE=5
while (($#)); do
  case "$1" in
    --start) START="$2"; shift 2 ;;
    --step) STEP="$2"; shift 2 ;;
    --max) MAX="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RATE="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

# shellcheck source=../tests/packages.sh
source tests/packages.sh
ensure_packages "sipp sip-tester" "bc bc"
cargo build --release -q -p bench
BENCH=target/release/bench
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- SIPp -> SIPp ----------------------------------------------------------
sipp_limit=0
rate=$START
while ((rate <= MAX)); do
  port=$(free_port)
  calls=$((rate * SECONDS_PER_RATE))
  timeout $((SECONDS_PER_RATE * 4 + 30)) sipp -sf tests/scenarios/uas_basic_rr.xml -i 127.0.0.1 -p "$port" \
    -bg -trace_err -error_file "$WORK/uas_errors.log" -buff_size 4194304 >/dev/null 2>&1 || true
  uas_pid=$(pgrep -n -f "sipp -sf tests/scenarios/uas_basic_rr.xml -i 127.0.0.1 -p $port" || true)
  [[ -n "$uas_pid" ]] && PIDS+=("$uas_pid")
  sleep 0.5
  start=$(date +%s.%N)
  timeout $((SECONDS_PER_RATE * 4 + 30)) sipp -sf tests/scenarios/uac_basic_rr.xml -i 127.0.0.1 -p "$(free_port)" \
    -r "$rate" -m "$calls" -l $((rate * 5 + 100)) -buff_size 4194304 -nostdin \
    -trace_stat -stf "$WORK/stat.csv" -fd 1 -timeout $((SECONDS_PER_RATE * 4 + 20)) \
    "127.0.0.1:$port" >/dev/null 2>&1 || true
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  [[ -n "$uas_pid" ]] && kill "$uas_pid" 2>/dev/null || true
  last=$(tail -n1 "$WORK/stat.csv" 2>/dev/null || true)
  header=$(head -n1 "$WORK/stat.csv" 2>/dev/null || true)
  col() { echo "$header" | tr ';' '\n' | grep -n -x "$1" | cut -d: -f1; }
  ok=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
  failed=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')")
  achieved=$(echo "$ok / $elapsed" | bc)
  echo "sipp: offered $rate cps: $ok ok, $failed failed in ${elapsed}s (about $achieved cps)"
  rm -f "$WORK/stat.csv"
  late=$(echo "$elapsed > $SECONDS_PER_RATE * 1.1 + 0.5" | bc)
  if [[ "$failed" != 0 ]] || ((ok != calls)) || ((late)); then
    break
  fi
  sipp_limit=$rate
  rate=$((rate + STEP))
done

# --- bench -> bench --------------------------------------------------------
port=$(free_port)
$BENCH uas --listen "127.0.0.1:$port" --first-core 0 >"$WORK/uas.log" 2>&1 &
PIDS+=("$!")
sleep 0.5
bench_out=$($BENCH ramp --target "127.0.0.1:$port" --first-core 1 --start "$START" --step "$STEP" \
  --max "$MAX" --step-s "$SECONDS_PER_RATE" --drain-s 5 2>/dev/null)
echo "$bench_out" | grep '^step' | sed 's/^/bench: /'
bench_limit=$(echo "$bench_out" | tail -n1 | sed 's/^cps_limit=//')

echo "sipp_limit=$sipp_limit"
echo "bench_limit=$bench_limit"
if ((sipp_limit > 0)); then
  echo "ratio=$(echo "scale=2; $bench_limit / $sipp_limit" | bc)"
fi
