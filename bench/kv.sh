#!/usr/bin/env bash
# kv.sh compares herd store with etcd on this machine.
#
# It builds herd and an etcd server (bench/etcd, from the etcd Go module in
# go.mod), then runs the same `herd bench kv` workloads against each system.
# One server runs at a time, with default settings and its data directory
# under one temporary directory (so both use the same disk). The systems
# take turns workload group by workload group, so that a change in other
# load on the machine during the run affects both alike:
#
#   put-1      puts from 1 client over 1 connection        (fresh data dir)
#   put-N      puts from N clients over C connections      (fresh data dir)
#   range-s-N  serializable reads of one key, N clients    (after put-N)
#   range-l-N  linearizable reads of one key, N clients    (after put-N)
#
# Puts write new keys (sequential keys, key space = number of puts). The
# range workloads read one key written just before them, in a store that
# already holds the put-N keys.
#
# The results replace the section between <!-- kv:begin --> and
# <!-- kv:end --> in docs/benchmarks.md, with the command, date and machine.
#
# Settings (environment variables, defaults in brackets):
#   KV_SYSTEMS      systems to run, in order             ["etcd herd"]
#   KV_PUT1_TOTAL   puts of the 1-client workload        [10000]
#   KV_PUT_TOTAL    puts of the N-client workload        [100000]
#   KV_RANGE_TOTAL  reads of each range workload         [100000]
#   KV_CLIENTS      N, concurrent clients                [64]
#   KV_CONNS        C, gRPC connections                  [8]
#   KV_KEY_SIZE     key size in bytes                    [8]
#   KV_VAL_SIZE     value size in bytes                  [256]
#   KV_ETCD_PORT    etcd client port (peer port is +1)   [23790]
#   KV_HERD_PORT    herd store client port               [23800]
#   KV_TMPDIR       parent of the temporary directory    [${TMPDIR:-/tmp}]
#   KV_DOC          file to write the results into       [docs/benchmarks.md]
#   KV_KEEP         1 keeps the temporary directory      [0]
#   KV_IDLE_WAIT    before each server start, wait up to this many seconds
#                   for the CPUs to be less than 10% busy (0: no wait)  [0]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KV_SYSTEMS=${KV_SYSTEMS:-"etcd herd"}
KV_PUT1_TOTAL=${KV_PUT1_TOTAL:-10000}
KV_PUT_TOTAL=${KV_PUT_TOTAL:-100000}
KV_RANGE_TOTAL=${KV_RANGE_TOTAL:-100000}
KV_CLIENTS=${KV_CLIENTS:-64}
KV_CONNS=${KV_CONNS:-8}
KV_KEY_SIZE=${KV_KEY_SIZE:-8}
KV_VAL_SIZE=${KV_VAL_SIZE:-256}
KV_ETCD_PORT=${KV_ETCD_PORT:-23790}
KV_HERD_PORT=${KV_HERD_PORT:-23800}
KV_TMPDIR=${KV_TMPDIR:-${TMPDIR:-/tmp}}
KV_DOC=${KV_DOC:-$ROOT/docs/benchmarks.md}
KV_KEEP=${KV_KEEP:-0}
KV_IDLE_WAIT=${KV_IDLE_WAIT:-0}

# The exact command, with every setting spelled out, for the report.
COMMAND="KV_SYSTEMS=\"$KV_SYSTEMS\" KV_PUT1_TOTAL=$KV_PUT1_TOTAL KV_PUT_TOTAL=$KV_PUT_TOTAL KV_RANGE_TOTAL=$KV_RANGE_TOTAL KV_CLIENTS=$KV_CLIENTS KV_CONNS=$KV_CONNS KV_KEY_SIZE=$KV_KEY_SIZE KV_VAL_SIZE=$KV_VAL_SIZE KV_IDLE_WAIT=$KV_IDLE_WAIT bench/kv.sh"

log() { printf '%s kv.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

command -v python3 >/dev/null || die "python3 is needed to write the report"
for sys in $KV_SYSTEMS; do
	[[ $sys == etcd || $sys == herd ]] || die "unknown system $sys in KV_SYSTEMS (want etcd and/or herd)"
done

WORK=$(mktemp -d "$KV_TMPDIR/herd-kv-bench.XXXXXX")
BIN=$WORK/bin
RESULTS=$WORK/results
mkdir -p "$BIN" "$RESULTS"

SERVER_PID=""
SERVER_LOG=""
BENCH_PID=""

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	local pid=$SERVER_PID
	SERVER_PID=""
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "server $pid did not stop in 10s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	if [[ -n $BENCH_PID ]]; then
		kill -TERM "$BENCH_PID" 2>/dev/null || true
		wait "$BENCH_PID" 2>/dev/null || true
	fi
	stop_server
	if [[ $rc -ne 0 && -n $SERVER_LOG && -f $SERVER_LOG ]]; then
		log "last lines of $SERVER_LOG:"
		tail -n 20 "$SERVER_LOG" >&2 || true
	fi
	if [[ $KV_KEEP == 1 || $rc -ne 0 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building herd and etcd into $BIN"
go build -o "$BIN/herd" ./cmd/herd
go build -o "$BIN/etcd" ./bench/etcd
HERD=$BIN/herd
"$HERD" bench kv --help >/dev/null 2>&1 || die "$HERD has no 'bench kv' command"
if [[ " $KV_SYSTEMS " == *" herd "* ]]; then
	"$HERD" store --help >/dev/null 2>&1 || die "$HERD has no 'store' command"
fi

port_of() {
	case $1 in
	etcd) echo "$KV_ETCD_PORT" ;;
	herd) echo "$KV_HERD_PORT" ;;
	esac
}

# cpu_busy prints how busy the CPUs were over one second, in percent.
cpu_busy() {
	local a b i total=0 idle
	read -r -a a < <(grep '^cpu ' /proc/stat)
	sleep 1
	read -r -a b < <(grep '^cpu ' /proc/stat)
	# Fields 1-8: user nice system idle iowait irq softirq steal.
	for i in 1 2 3 4 5 6 7 8; do
		total=$((total + b[i] - a[i]))
	done
	idle=$((b[4] - a[4] + b[5] - a[5]))
	echo $((total > 0 ? 100 * (total - idle) / total : 0))
}

# BUSY records, before each server start (when none of ours runs), how busy
# other processes kept the CPUs; the report shows it.
BUSY=()

# start_server SYSTEM RUN starts SYSTEM on a new data directory and waits
# until it answers a linearizable read.
start_server() {
	local sys=$1 run=$2 port busy waited=0
	busy=$(cpu_busy)
	while ((busy >= 10 && waited < KV_IDLE_WAIT)); do
		((waited == 0)) && log "CPUs ${busy}% busy with other work; waiting up to ${KV_IDLE_WAIT}s for them to settle"
		sleep 4
		waited=$((waited + 5))
		busy=$(cpu_busy)
	done
	BUSY+=("$busy")
	((busy < 10)) || log "warning: CPUs ${busy}% busy with other work before starting $sys"
	port=$(port_of "$sys")
	local dir=$WORK/data/$sys-$run
	mkdir -p "$WORK/data" "$WORK/logs"
	SERVER_LOG=$WORK/logs/$sys-$run.log
	case $sys in
	etcd)
		local peer=http://127.0.0.1:$((port + 1))
		"$BIN/etcd" --name bench --data-dir "$dir" \
			--listen-client-urls "http://127.0.0.1:$port" \
			--advertise-client-urls "http://127.0.0.1:$port" \
			--listen-peer-urls "$peer" \
			--initial-advertise-peer-urls "$peer" \
			--initial-cluster "bench=$peer" \
			>"$SERVER_LOG" 2>&1 &
		;;
	herd)
		"$HERD" store --name bench --data-dir "$dir" \
			--listen-client-urls "http://127.0.0.1:$port" \
			>"$SERVER_LOG" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	# The probe reads a key without writing it (KEY given), so the store
	# starts each workload empty.
	for _ in $(seq 1 60); do
		kill -0 "$SERVER_PID" 2>/dev/null || die "$sys exited during start-up"
		if "$HERD" bench kv range herd-bench/probe --endpoints "127.0.0.1:$port" \
			--total 1 --consistency l --dial-timeout 1s --request-timeout 1s >/dev/null 2>&1; then
			log "$sys is up on 127.0.0.1:$port (data dir $dir)"
			return 0
		fi
		sleep 0.5
	done
	die "$sys did not answer on 127.0.0.1:$port within 30s"
}

# bench SYSTEM WORKLOAD ARGS... runs `herd bench kv ARGS... --json` against
# the running server and keeps the result.
bench() {
	local sys=$1 workload=$2
	shift 2
	local out=$RESULTS/$sys.$workload.json
	log "$sys $workload: herd bench kv $* --endpoints 127.0.0.1:$(port_of "$sys")"
	# In the background so that a signal to this script is handled at once.
	"$HERD" bench kv "$@" --endpoints "127.0.0.1:$(port_of "$sys")" --json >"$out" &
	BENCH_PID=$!
	wait "$BENCH_PID"
	BENCH_PID=""
	python3 - "$out" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
print(f"    {r['requests_per_second']:.0f} req/s, p50 {l['p50']:.3f} ms, p99 {l['p99']:.3f} ms, "
      f"p99.9 {l['p99_9']:.3f} ms, {r['errors']} errors")
EOF
}

# Machine facts for the report.
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
read -r disk_dev disk_fs disk_size <<<"$(df -T -h "$WORK" | awk 'NR == 2 { print $1, $2, $3 }')"
# Puts from one client wait for the disk to make each write durable, so the
# disk's own sync latency helps to read them: 500 times a 4 KiB write and
# fdatasync, in the directory that holds the data dirs.
disk_sync=$(python3 - "$WORK" <<'EOF'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
buf, lat = b"\0" * 4096, []
try:
    for _ in range(500):
        t = time.perf_counter()
        os.write(fd, buf)
        os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1000)
finally:
    os.close(fd)
    os.remove(path)
lat.sort()
print(f"4 KiB write + fdatasync: p50 {statistics.median(lat):.3f} ms, "
      f"p99 {lat[int(len(lat) * 0.99) - 1]:.3f} ms over {len(lat)} writes")
EOF
)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
	rev="$rev (with uncommitted changes)"
fi

N=$KV_CLIENTS
PUT1=(put --clients 1 --conns 1 --total "$KV_PUT1_TOTAL" --key-size "$KV_KEY_SIZE" --val-size "$KV_VAL_SIZE"
	--sequential-keys --key-space-size "$KV_PUT1_TOTAL")
PUTN=(put --clients "$N" --conns "$KV_CONNS" --total "$KV_PUT_TOTAL" --key-size "$KV_KEY_SIZE" --val-size "$KV_VAL_SIZE"
	--sequential-keys --key-space-size "$KV_PUT_TOTAL")
RANGES=(range --clients "$N" --conns "$KV_CONNS" --total "$KV_RANGE_TOTAL" --val-size "$KV_VAL_SIZE" --consistency s)
RANGEL=(range --clients "$N" --conns "$KV_CONNS" --total "$KV_RANGE_TOTAL" --val-size "$KV_VAL_SIZE" --consistency l)

for sys in $KV_SYSTEMS; do
	start_server "$sys" put-1
	bench "$sys" put-1 "${PUT1[@]}"
	stop_server
done
for sys in $KV_SYSTEMS; do
	start_server "$sys" "put-$N"
	bench "$sys" "put-$N" "${PUTN[@]}"
	bench "$sys" "range-s-$N" "${RANGES[@]}"
	bench "$sys" "range-l-$N" "${RANGEL[@]}"
	stop_server
done

export KV_REPORT_COMMAND=$COMMAND
export KV_REPORT_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export KV_REPORT_MACHINE="$(nproc) CPUs ($cpu_model), $mem RAM, Linux $(uname -r)"
export KV_REPORT_DISK="$disk_fs on $disk_dev ($disk_size), data dirs under $KV_TMPDIR; $disk_sync"
export KV_REPORT_GO=$(go version)
export KV_REPORT_ETCD=$("$BIN/etcd" --version | sed -n "s/^etcd Version: //p")
export KV_REPORT_REV=$rev
export KV_REPORT_SYSTEMS=$KV_SYSTEMS
export KV_REPORT_CLIENTS=$N KV_REPORT_CONNS=$KV_CONNS
export KV_REPORT_BUSY="${BUSY[*]}"
export KV_REPORT_WORKLOADS="put-1|${PUT1[*]}
put-$N|${PUTN[*]}
range-s-$N|${RANGES[*]}
range-l-$N|${RANGEL[*]}"

python3 - "$RESULTS" "$KV_DOC" <<'EOF'
import json, os, sys

results_dir, doc = sys.argv[1], sys.argv[2]
env = os.environ
systems = env["KV_REPORT_SYSTEMS"].split()
workloads = [line.split("|", 1) for line in env["KV_REPORT_WORKLOADS"].splitlines()]
res = {}
for sys_name in systems:
    for w, _ in workloads:
        with open(os.path.join(results_dir, f"{sys_name}.{w}.json")) as f:
            res[sys_name, w] = json.load(f)

def num(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"

def ms(x):
    return f"{x:.3f}"

def ratio(h, e):
    return f"{h / e:.2f}×" if e else "n/a"

lat = ["p50", "p90", "p99", "p99_9"]
rows = [
    "| System | Workload | Throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | p99.9 (ms) | Errors |",
    "|---|---|--:|--:|--:|--:|--:|--:|",
]
for w, _ in workloads:
    for s in systems:
        r = res[s, w]
        l = r["latency_ms"]
        rows.append(f"| {s} | {w} | {num(r['requests_per_second'])} | " +
                    " | ".join(ms(l[k]) for k in lat) + f" | {r['errors']} |")
    if "herd" in systems and "etcd" in systems:
        h, e = res["herd", w], res["etcd", w]
        rows.append(f"| **herd/etcd** | {w} | **{ratio(h['requests_per_second'], e['requests_per_second'])}** | " +
                    " | ".join(ratio(h["latency_ms"][k], e["latency_ms"][k]) for k in lat) + " | |")

cmds = "\n".join(f"    {w}: herd bench kv {c} --endpoints 127.0.0.1:PORT --json" for w, c in workloads)
n, c = env["KV_REPORT_CLIENTS"], env["KV_REPORT_CONNS"]
notes = []
if set(systems) != {"etcd", "herd"}:
    notes.append("**Only " + " and ".join(systems) +
                 " ran in this run, so there are no herd/etcd ratios.**")
busy = [int(b) for b in env["KV_REPORT_BUSY"].split()]
if max(busy) >= 10:
    notes.append(f"**Other processes kept the CPUs up to {max(busy)}% busy before a server "
                 "start, so they competed with the benchmark: treat these figures and "
                 "ratios with caution.**")
note = "".join("\n" + n + "\n" for n in notes)
section = f"""<!-- kv:begin -->
<!-- Written by bench/kv.sh; rerun it to replace this section. -->
Run of {env['KV_REPORT_DATE']}:

    {env['KV_REPORT_COMMAND']}

- Machine: {env['KV_REPORT_MACHINE']}
- Disk: {env['KV_REPORT_DISK']}
- Go: {env['KV_REPORT_GO']}
- etcd: {env['KV_REPORT_ETCD']} (bench/etcd, built from the etcd module with `go build`)
- herd: commit {env['KV_REPORT_REV']}
- Other load: CPUs {", ".join(f"{b}%" for b in busy)} busy in the second before each server start
{note}
{chr(10).join(rows)}

Throughput ratios above 1× and latency ratios below 1× favour herd.
Latencies are per request, in milliseconds; p99.9 is the 99.9th percentile.

Workloads (the server's port in place of PORT; {n} clients share {c} connections):

{cmds}
<!-- kv:end -->"""

begin, end = "<!-- kv:begin -->", "<!-- kv:end -->"
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
if begin in text and end in text:
    head = text[:text.index(begin)]
    tail = text[text.index(end) + len(end):]
    text = head + section + tail
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
tmp = doc + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.replace(tmp, doc)
print(f"wrote results into {doc}", file=sys.stderr)
EOF
