#!/usr/bin/env bash
# CPU time per relayed RTP packet of our relay `media` and of Debian's
# rtpengine (userspace forwarding, --table=-1), driven the same way by
# `bench rtp`: calls set up over the ng protocol (offer/answer, deleted at the
# end), then N one-way streams of 50 packets/s, 172-byte datagrams.
#
#   bench/rtp_media_vs_rtpengine.sh [--streams "200 1000 2000"] [--duration S]
#                                   [--warmup S] [--relay media|rtpengine|both]
#                                   [--no-build] [--out DIR]
#                                   [--media-args "--io mmsg ..."]
#
# Each point starts the relay afresh, pinned to core 0 (`taskset -c 0`, all
# its threads); the generator runs on core 1. The relay's CPU time (utime +
# stime of /proc/PID/stat, all threads) is read by `bench rtp --relay-pid` at
# the edges of the measured window and divided by the packets received
# through the relay in that window. Prints one line per point and a table
# relay x streams -> cpu us/packet, loss.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

STREAMS="200 1000 2000"
DURATION=20
WARMUP=3
RELAYS="media rtpengine"
BUILD=1
OUT=""
MEDIA_ARGS=""
PPS=50
SIZE=172
while (($#)); do
  case "$1" in
    --streams) STREAMS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --relay) [[ "$2" == both ]] && RELAYS="media rtpengine" || RELAYS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --media-args) MEDIA_ARGS="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [[ " $RELAYS " == *" rtpengine "* ]] && ! command -v rtpengine >/dev/null 2>&1; then
  echo "installing rtpengine-daemon"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends rtpengine-daemon
  # The package's service (if the host started it) is not the one measured.
  $sudo systemctl stop rtpengine-daemon 2>/dev/null || $sudo service rtpengine-daemon stop 2>/dev/null || true
fi
((BUILD)) && cargo build --release -q -p media -p bench
BENCH="$ROOT/target/release/bench"
MEDIA="$ROOT/target/release/media"
[[ -n "${CARGO_TARGET_DIR:-}" ]] && BENCH="$CARGO_TARGET_DIR/release/bench" && MEDIA="$CARGO_TARGET_DIR/release/media"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# media binds its whole port range at start; the generator one socket per
# endpoint. Both fit under the hard limit.
ulimit -n "$(ulimit -Hn)"

# 2 ports (RTP, RTCP) per side per call: 4 per call, 1,000 calls at 2,000
# streams; the rest is slack.
PORT_MIN=20000
PORT_MAX=24999
RPID=""
cleanup() {
  if [[ -n "$RPID" ]]; then
    kill "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
    RPID=""
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until the ng port answers a ping (at most 10 s).
wait_ng() {
  python3 - "$1" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
deadline = time.time() + 10
while time.time() < deadline:
    try:
        s.sendto(b"ready d7:command4:pinge", ("127.0.0.1", int(sys.argv[1])))
        if b"pong" in s.recv(4096):
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

start_relay() { # relay ng_port log
  case "$1" in
    media)
      # shellcheck disable=SC2086 # MEDIA_ARGS is split into options on purpose
      RUST_LOG=warn taskset -c 0 "$MEDIA" --interface 127.0.0.1 --listen-ng "127.0.0.1:$2" \
        --port-min "$PORT_MIN" --port-max "$PORT_MAX" $MEDIA_ARGS >"$3" 2>&1 &
      ;;
    rtpengine)
      taskset -c 0 rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=4 \
        --interface=127.0.0.1 --listen-ng="127.0.0.1:$2" --port-min="$PORT_MIN" --port-max="$PORT_MAX" \
        >"$3" 2>&1 &
      ;;
  esac
  RPID=$!
}

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

declare -A CPU LOSS
rows=()
echo "rtp: ${PPS} packets/s per stream, ${SIZE} bytes, ${WARMUP} s warmup + ${DURATION} s measured, $(nproc) CPUs, $(uname -r); logs in $OUT"
for relay in $RELAYS; do
  for n in $STREAMS; do
    ng=$(free_port)
    start_relay "$relay" "$ng" "$OUT/$relay-$n.log"
    if ! wait_ng "$ng"; then
      echo "$relay did not answer ng ping; log: $OUT/$relay-$n.log" >&2
      exit 1
    fi
    line=$(taskset -c 1 "$BENCH" rtp --ng "127.0.0.1:$ng" --streams "$n" --pps "$PPS" --size "$SIZE" \
      --duration "$DURATION" --warmup "$WARMUP" --relay-pid "$RPID" --json "$OUT/$relay-$n.json" \
      2>"$OUT/bench-$relay-$n.err") || { echo "bench rtp failed:" >&2; cat "$OUT/bench-$relay-$n.err" >&2; exit 1; }
    cleanup
    echo "$relay: $line"
    CPU[$relay,$n]=$(field cpu_us_per_packet "$line")
    LOSS[$relay,$n]=$(field loss_pct "$line")
    rows+=("$(printf '%-10s %7s %10s %10s %8s %9s %10s %9s %8s' "$relay" "$n" \
      "$(field sent "$line")" "$(field received "$line")" "$(field lost "$line")" "${LOSS[$relay,$n]}" \
      "${CPU[$relay,$n]}" "$(field latency_p99_us "$line")" "$(field udp_rcvbuf_errors "$line")")")
  done
done

echo
printf '%-10s %7s %10s %10s %8s %9s %10s %9s %8s\n' relay streams sent received lost loss_pct us/packet p99_us rcvbuf
printf '%s\n' "${rows[@]}"
if [[ " $RELAYS " == *" media "* && " $RELAYS " == *" rtpengine "* ]]; then
  for n in $STREAMS; do
    m=${CPU[media,$n]}; r=${CPU[rtpengine,$n]}
    if [[ -n "$m" && -n "$r" && "$m" != "-" && "$r" != "-" ]]; then
      echo "streams=$n media/rtpengine cpu per packet: $(python3 -c "print(f'{$m/$r:.3f}' if $r > 0 else '-')")"
    fi
  done
fi
