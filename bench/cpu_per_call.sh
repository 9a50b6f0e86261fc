#!/usr/bin/env bash
# CPU time a SIP proxy spends per call: SIPp UAC -> proxy -> SIPp UAS, at a
# fixed call rate for a fixed time, for a release-built `edge` and for
# Kamailio (tests/kamailio/proxy.cfg), with the same UAC, UAS and scenarios.
#
#   cpu_us_per_call = (utime + stime of the proxy's processes over the run)
#                     / successful calls
#
# utime and stime come from /proc/<pid>/stat (all threads of a process;
# Kamailio: summed over every process of its process group, main and
# children), read just before the UAC starts and just after it exits.
# --edge-dispatch adds a row `edge+ds`: edge with its dispatcher (a generated
# dispatcher.list, round-robin over UAS A and B, no probing) instead of one
# next hop.
#
# Usage: bench/cpu_per_call.sh [--rate CPS] [--duration S] [--proxy edge|kamailio|both]
#                              [--edge-dispatch] [--edge-cores N] [--kamailio-children N]
#                              [--hold MS] [--no-build] [--out FILE] [--keep]
# See bench/README.md. Loopback only; everything started is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCENARIOS="$ROOT/tests/scenarios"
KAMAILIO_CFG="$ROOT/tests/kamailio/proxy.cfg"
KAMAILIO_MODULES="/usr/lib/x86_64-linux-gnu/kamailio/modules"

RATE=1000
DURATION=20
PROXY=both
EDGE_CORES=1
KAMAILIO_CHILDREN=4
HOLD_MS=0
BUILD=1
OUT=""
KEEP=0
EDGE_DISPATCH=0

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --proxy) PROXY="$2"; shift 2 ;;
    --edge-cores) EDGE_CORES="$2"; shift 2 ;;
    --edge-dispatch) EDGE_DISPATCH=1; shift ;;
    --kamailio-children) KAMAILIO_CHILDREN="$2"; shift 2 ;;
    --hold) HOLD_MS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$PROXY" in edge|kamailio|both) ;; *) echo "--proxy: edge, kamailio or both" >&2; exit 2 ;; esac
if ((EDGE_DISPATCH)) && [[ "$PROXY" == kamailio ]]; then
  echo "--edge-dispatch needs --proxy edge or both" >&2; exit 2
fi
for n in "$RATE" "$DURATION" "$EDGE_CORES" "$KAMAILIO_CHILDREN" "$HOLD_MS"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; exit 2; }
done
CALLS=$((RATE * DURATION))
# at most this many calls in progress (a stalled proxy fails calls, not RAM)
LIMIT=$((RATE * 5 + 100))
CLK_TCK=$(getconf CLK_TCK)
# SIPp's socket buffers (its default, 64 KiB, overflows in bursts at 1000 cps)
SIPP_BUFFER=1048576

need() { command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 ($2)" >&2; exit 2; }; }
# shellcheck source=../tests/packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/packages.sh"
if [[ "$PROXY" != edge ]]; then
  ensure_packages "sipp sip-tester" "kamailio kamailio"
else
  ensure_packages "sipp sip-tester"
fi
need python3 "used for free ports and the OPTIONS readiness ping"
need setsid "util-linux"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/edge-bench.XXXXXX")"
PIDS=()     # processes we started (sipp)
GROUPS_=()  # process groups we started (proxies, via setsid)

cleanup() {
  local rc=$?
  set +e
  for g in "${GROUPS_[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for g in "${GROUPS_[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if ((KEEP)) || ((rc != 0)); then
    echo "bench: files kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# n distinct free UDP ports on 127.0.0.1
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# waits until 127.0.0.1:$1 answers an OPTIONS with 200 (at most $2 seconds)
wait_options_200() {
  python3 - "$1" "$2" <<'EOF'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
deadline = time.time() + limit
n = 0
while time.time() < deadline:
    n += 1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.1)
    lp = s.getsockname()[1]
    msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-bench-{n};rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1:{lp}>;tag=b{n}\r\n"
           f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: bench-ping-{n}@127.0.0.1\r\n"
           f"CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n")
    try:
        s.sendto(msg.encode(), ("127.0.0.1", port))
        if s.recv(4096).startswith(b"SIP/2.0 200"):
            sys.exit(0)
    except OSError:
        time.sleep(0.05)
    finally:
        s.close()
sys.exit(1)
EOF
}

# utime+stime, in clock ticks, summed over the live processes of group $1
group_ticks() {
  local pgid=$1 total=0 f rest
  for f in /proc/[0-9]*/stat; do
    rest=$(cat "$f" 2>/dev/null) || continue
    rest=${rest##*) }   # drop "pid (comm) ", comm may hold spaces
    # shellcheck disable=SC2086
    set -- $rest        # $1 state, $3 pgrp, $12 utime, $13 stime
    if [[ "${3:-}" == "$pgid" ]]; then
      total=$((total + ${12} + ${13}))
    fi
  done
  echo "$total"
}

group_procs() {
  local pgid=$1 n=0 f rest
  for f in /proc/[0-9]*/stat; do
    rest=$(cat "$f" 2>/dev/null) || continue
    rest=${rest##*) }
    # shellcheck disable=SC2086
    set -- $rest
    [[ "${3:-}" == "$pgid" ]] && n=$((n + 1))
  done
  echo "$n"
}

# the host's UDP receive-buffer overflows so far (datagrams dropped by the kernel)
udp_rcvbuf_errors() {
  awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}

# a column of the last line of a SIPp -trace_stat file, by header name
stat_col() {
  awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
                         NF > 1 { v = $c } END { print (v == "" ? 0 : v) }' "$1"
}

# calls a UAS took (SIPp's TotalCallCreated: the INVITEs that opened a call)
uas_calls() { # name
  stat_col "$WORK/$1/stats.csv" 'TotalCallCreated'
}

start_uas() { # name port
  local dir="$WORK/$1"
  mkdir -p "$dir"
  (cd "$dir" && exec sipp -sf "$SCENARIOS/uas_basic_rr.xml" -i 127.0.0.1 -p "$2" -t u1 \
      -buff_size "$SIPP_BUFFER" -nostdin -timeout "$((DURATION + 120))s" -trace_err -error_file "$dir/errors.log" \
      -trace_stat -stf "$dir/stats.csv" -fd 1 >"$dir/stdout.log" 2>"$dir/stderr.log") &
  PIDS+=($!)
}

stop_uas_pids() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# runs the UAC against 127.0.0.1:$2 and measures group $3; prints a result line
run_measured() { # label proxy_port pgid uac_port
  local label=$1 port=$2 pgid=$3 uac_port=$4 dir="$WORK/$1-uac"
  mkdir -p "$dir"
  local before after start end rc drops_before drops_after
  drops_before=$(udp_rcvbuf_errors)
  before=$(group_ticks "$pgid")
  start=$(date +%s.%N)
  set +e
  (cd "$dir" && exec sipp "127.0.0.1:$port" -sf "$SCENARIOS/uac_basic_rr.xml" -i 127.0.0.1 \
      -p "$uac_port" -t u1 -buff_size "$SIPP_BUFFER" -r "$RATE" -rp 1000 -m "$CALLS" -l "$LIMIT" -d "$HOLD_MS" -nostdin \
      -timeout "$((DURATION + 60))s" -trace_stat -stf "$dir/stats.csv" -fd 1 \
      -trace_err -error_file "$dir/errors.log" >"$dir/stdout.log" 2>"$dir/stderr.log")
  rc=$?
  set -e
  end=$(date +%s.%N)
  after=$(group_ticks "$pgid")
  drops_after=$(udp_rcvbuf_errors)
  local ok failed retrans procs
  ok=$(stat_col "$dir/stats.csv" 'SuccessfulCall(C)')
  failed=$(stat_col "$dir/stats.csv" 'FailedCall(C)')
  retrans=$(stat_col "$dir/stats.csv" 'Retransmissions(C)')
  procs=$(group_procs "$pgid")
  python3 - "$label" "$before" "$after" "$CLK_TCK" "$ok" "$failed" "$retrans" "$start" "$end" "$rc" "$procs" \
    "$((drops_after - drops_before))" <<'EOF'
import sys
label, before, after, tck, ok, failed, retrans, start, end, rc, procs, drops = sys.argv[1:]
ticks = int(after) - int(before)
cpu_s = ticks / int(tck)
ok = int(ok)
wall = float(end) - float(start)
per_call = cpu_s * 1e6 / ok if ok else float("nan")
print(f"{label}\t{ok}\t{failed}\t{retrans}\t{cpu_s:.2f}\t{wall:.1f}\t{per_call:.1f}\t{rc}\t{procs}\t{drops}")
EOF
}

RESULTS=()

bench_kamailio() {
  local p uas_a uas_b port uac dir="$WORK/kamailio"
  read -r uas_a uas_b port uac <<<"$(free_ports 4)"
  mkdir -p "$dir"
  start_uas kamailio-uas-a "$uas_a"
  start_uas kamailio-uas-b "$uas_b"
  printf '1 sip:127.0.0.1:%s;transport=udp\n1 sip:127.0.0.1:%s;transport=udp\n' \
    "$uas_a" "$uas_b" >"$dir/dispatcher.list"
  setsid kamailio -DD -E -f "$KAMAILIO_CFG" -L "$KAMAILIO_MODULES" -l "udp:127.0.0.1:$port" \
    -n "$KAMAILIO_CHILDREN" -m 256 -M 8 -w "$dir" -Y "$dir" -P "$dir/kamailio.pid" -a no \
    -A "DS_LIST=\"$dir/dispatcher.list\"" -A "LOG_LEVEL=1" >"$dir/kamailio.log" 2>&1 &
  p=$!
  GROUPS_+=("$p")
  if ! wait_options_200 "$port" 15; then
    echo "kamailio did not answer OPTIONS; log:" >&2
    tail -20 "$dir/kamailio.log" >&2
    exit 1
  fi
  log "kamailio ($KAMAILIO_CHILDREN UDP children, $(group_procs "$p") processes) on :$port," \
      "round-robin to UAS :$uas_a and :$uas_b; $CALLS calls at $RATE cps"
  RESULTS+=("$(run_measured kamailio "$port" "$p" "$uac")")
  kill -TERM -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  stop_uas_pids
  log "kamailio: calls taken by UAS A $(uas_calls kamailio-uas-a), UAS B $(uas_calls kamailio-uas-b)"
}

EDGE_BIN="$ROOT/target/release/edge"

build_edge() {
  if ((BUILD)); then
    log "cargo build --release -p edge"
    (cd "$ROOT" && cargo build --release --quiet -p edge)
  fi
  [[ -x "$EDGE_BIN" ]] || { echo "no $EDGE_BIN (drop --no-build)" >&2; exit 1; }
}

# edge with one next hop (label edge) or with its dispatcher (label edge+ds)
bench_edge() { # next-hop|dispatch
  local mode=$1 label p uas_a uas_b port uac dir route
  case "$mode" in
    next-hop) label=edge ;;
    dispatch) label=edge+ds ;;
  esac
  dir="$WORK/$label"
  read -r uas_a uas_b port uac <<<"$(free_ports 4)"
  mkdir -p "$dir"
  start_uas "$label-uas-a" "$uas_a"
  start_uas "$label-uas-b" "$uas_b"
  printf '[runtime]\nshutdown_grace_ms = 1000\n' >"$dir/edge.toml"
  if [[ "$mode" == dispatch ]]; then
    # Kamailio's setup: set 1 = UAS A and B, round-robin (algorithm 4), no
    # OPTIONS probing (flags 0 and probe_all = false; Kamailio runs with
    # ds_ping_interval 0). The UAS scenario does not answer OPTIONS anyway.
    printf '1 sip:127.0.0.1:%s;transport=udp 0 0 duid=a\n1 sip:127.0.0.1:%s;transport=udp 0 0 duid=b\n' \
      "$uas_a" "$uas_b" >"$dir/dispatcher.list"
    printf '\n[dispatcher]\nset = 1\nalgorithm = 4\n\n[dispatcher.health]\nprobe_all = false\n' \
      >>"$dir/edge.toml"
    route=(--dispatcher-list "$dir/dispatcher.list")
  else
    route=(--next-hop "sip:127.0.0.1:$uas_a")
  fi
  NO_COLOR=1 RUST_LOG=info setsid "$EDGE_BIN" --config "$dir/edge.toml" --listen "udp:127.0.0.1:$port" \
    "${route[@]}" --cores "$EDGE_CORES" >"$dir/edge.log" 2>&1 &
  p=$!
  GROUPS_+=("$p")
  if ! wait_options_200 "$port" 15; then
    echo "edge did not answer OPTIONS; log:" >&2
    tail -20 "$dir/edge.log" >&2
    exit 1
  fi
  if [[ "$mode" == dispatch ]]; then
    log "edge (release, --cores $EDGE_CORES) on :$port, dispatcher round-robin to UAS :$uas_a and :$uas_b," \
        "no probing; $CALLS calls at $RATE cps"
  else
    log "edge (release, --cores $EDGE_CORES) on :$port, one next hop: every call to UAS :$uas_a" \
        "(UAS :$uas_b runs idle); $CALLS calls at $RATE cps"
  fi
  RESULTS+=("$(run_measured "$label" "$port" "$p" "$uac")")
  kill -TERM "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  if grep -q ' ERROR ' "$dir/edge.log"; then
    echo "$label logged errors:" >&2
    grep ' ERROR ' "$dir/edge.log" | head -5 >&2
  fi
  stop_uas_pids
  log "$label: calls taken by UAS A $(uas_calls "$label-uas-a"), UAS B $(uas_calls "$label-uas-b")"
}

log "workdir $WORK; rate $RATE cps for $DURATION s ($CALLS calls), hold ${HOLD_MS} ms," \
    "scenarios uac_basic_rr -> proxy -> uas_basic_rr; $(nproc) CPUs"
[[ "$PROXY" == edge ]] || bench_kamailio
if [[ "$PROXY" != kamailio ]]; then
  build_edge
  bench_edge next-hop
  if ((EDGE_DISPATCH)); then bench_edge dispatch; fi
fi

{
  echo
  echo "cpu_per_call: $RATE cps x $DURATION s = $CALLS calls, hold ${HOLD_MS} ms, $(nproc) CPUs, $(uname -r)"
  if [[ "$PROXY" != edge ]]; then
    echo "  kamailio: $(kamailio -v 2>/dev/null | head -1 | sed 's/^version: //'), tests/kamailio/proxy.cfg," \
         "-n $KAMAILIO_CHILDREN UDP children, dispatcher round-robin over 2 UAS"
  fi
  if [[ "$PROXY" != kamailio ]]; then
    echo "  edge: target/release/edge --cores $EDGE_CORES, one next hop (UAS A; UAS B idle)"
  fi
  if ((EDGE_DISPATCH)); then
    echo "  edge+ds: target/release/edge --cores $EDGE_CORES, dispatcher.list set 1 = UAS A and B," \
         "algorithm 4 (round-robin), no probing"
  fi
  echo "  (retrans: SIPp UAC retransmissions; udp_drops: host UDP receive-buffer overflows during the run)"
  printf '%-9s %9s %7s %8s %8s %7s %12s %5s %6s %10s\n' proxy ok_calls failed retrans cpu_s wall_s cpu_us/call rc procs udp_drops
  for r in "${RESULTS[@]}"; do
    IFS=$'\t' read -r label ok failed retrans cpu wall per rc procs drops <<<"$r"
    printf '%-9s %9s %7s %8s %8s %7s %12s %5s %6s %10s\n' "$label" "$ok" "$failed" "$retrans" "$cpu" "$wall" "$per" "$rc" "$procs" "$drops"
  done
  # ratios against kamailio (when it ran), and the cost of dispatching
  python3 - "${RESULTS[@]}" <<'EOF'
import sys
rows = {r.split("\t")[0]: float(r.split("\t")[6]) for r in sys.argv[1:]}
k = rows.get("kamailio")
for label in ("edge", "edge+ds"):
    e = rows.get(label)
    if k and e:
        print(f"ratio {label}/kamailio cpu per call: {e / k:.3f} (kamailio/{label}: {k / e:.2f}x)")
if rows.get("edge") and rows.get("edge+ds"):
    d = rows["edge+ds"] - rows["edge"]
    print(f"dispatching: edge+ds - edge = {d:+.1f} us/call ({d / rows['edge'] * 100:+.1f} %)")
EOF
} | tee -a "${OUT:-/dev/null}"
