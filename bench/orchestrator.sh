#!/usr/bin/env bash
# orchestrator.sh measures herd's orchestrator end to end on this machine.
#
#   startup   `herd up`; apply a service of 1, 10 and 100 sleeping replicas
#             and time until every replica runs (p50/p99 over repeats)
#   idle      RSS and CPU of an idle `herd up` (one node, no jobs)
#   trace     store requests of seed 004's Table 1 trace (create a service
#             of 3, scale to 10, scale to 5, delete), by kind
#   failover  `herd server` and two `herd agent`s; kill -9 one agent and
#             time until its replicas run on the other (default settings)
#
# The results replace the section between <!-- jobs:begin --> and
# <!-- jobs:end --> in docs/benchmarks.md, with the command and machine.
#
# Settings (environment variables, defaults in brackets):
#   JOBS_REPLICAS   replica counts of the startup runs    [1,10,100]
#   JOBS_REPEATS    runs per replica count                [10]
#   JOBS_IDLE       seconds the idle measurement lasts    [30]
#   JOBS_FAILOVERS  failover runs                         [3]
#   JOBS_PORT       first of the ports used               [27080]
#   JOBS_DOC        file to write the results into        [docs/benchmarks.md]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS_REPLICAS=${JOBS_REPLICAS:-1,10,100}
JOBS_REPEATS=${JOBS_REPEATS:-10}
JOBS_IDLE=${JOBS_IDLE:-30}
JOBS_FAILOVERS=${JOBS_FAILOVERS:-3}
JOBS_PORT=${JOBS_PORT:-27080}
JOBS_DOC=${JOBS_DOC:-$ROOT/docs/benchmarks.md}
COMMAND="JOBS_REPLICAS=$JOBS_REPLICAS JOBS_REPEATS=$JOBS_REPEATS JOBS_IDLE=$JOBS_IDLE JOBS_FAILOVERS=$JOBS_FAILOVERS bench/orchestrator.sh"

die() { echo "orchestrator.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is needed to write the report"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-jobs.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	pkill -9 -f "sleep 100000" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

echo "building herd" >&2
go build -o "$TMP/herd" ./cmd/herd
HERD="$TMP/herd"

# wait_api waits until the API server at $1 lists a ready node.
wait_api() {
	for _ in $(seq 1 300); do
		if "$HERD" get nodes --server "$1" 2>/dev/null | grep -q ready; then return 0; fi
		sleep 0.1
	done
	die "no ready node at $1"
}

# wait_nodes waits until the API server at $1 lists $2 ready nodes.
wait_nodes() {
	for _ in $(seq 1 300); do
		if [ "$("$HERD" get nodes --server "$1" 2>/dev/null | grep -cw ready)" -ge "$2" ]; then return 0; fi
		sleep 0.1
	done
	die "fewer than $2 ready nodes at $1"
}

# ticks prints utime+stime of process $1 in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

API="127.0.0.1:$JOBS_PORT"
echo "herd up" >&2
"$HERD" up --data-dir "$TMP/up" --listen "$API" --store-listen "http://127.0.0.1:0" --name bench \
	>"$TMP/up.log" 2>&1 &
UP=$!
PIDS+=("$UP")
wait_api "http://$API"

echo "idle for ${JOBS_IDLE}s" >&2
sleep 5
t0=$(ticks "$UP")
sleep "$JOBS_IDLE"
t1=$(ticks "$UP")
HZ=$(getconf CLK_TCK)
IDLE_CPU=$(python3 -c "print(f'{100*($t1-$t0)/$HZ/$JOBS_IDLE:.2f}')")
IDLE_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$UP/status")

echo "startup $JOBS_REPLICAS x $JOBS_REPEATS" >&2
"$HERD" bench jobs startup --server "http://$API" --replicas "$JOBS_REPLICAS" --repeats "$JOBS_REPEATS" --json >"$TMP/startup.json"
echo "trace" >&2
"$HERD" bench jobs trace --server "http://$API" --json >"$TMP/trace.json"
kill -TERM "$UP"
wait "$UP" || true

echo "failover x $JOBS_FAILOVERS" >&2
SRV="127.0.0.1:$((JOBS_PORT + 1))"
"$HERD" server --data-dir "$TMP/server" --listen "$SRV" --store-listen "http://127.0.0.1:0" >"$TMP/server.log" 2>&1 &
PIDS+=("$!")
start_agent() {
	"$HERD" agent --server "http://$SRV" --name "$1" --data-dir "$TMP/$1" --listen 127.0.0.1:0 >>"$TMP/$1.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}
start_agent b1
B1=$AGENT_PID
: >"$TMP/failover.txt"
for i in $(seq 1 "$JOBS_FAILOVERS"); do
	start_agent "a$i"
	wait_nodes "http://$SRV" 2
	"$HERD" bench jobs failover --server "http://$SRV" --replicas 4 --node "a$i" --pid "$AGENT_PID" >>"$TMP/failover.txt"
	# The killed agent's node stays down; the tasks it left are killed here
	# (benchjobs tasks run "sleep 100000"; the job is deleted by now).
	pkill -9 -f "sleep 100000" 2>/dev/null || true
done
kill -9 "$B1" 2>/dev/null || true

python3 - "$JOBS_DOC" "$TMP" "$COMMAND" "$IDLE_CPU" "$IDLE_RSS" "$JOBS_IDLE" <<'PY'
import json, os, re, subprocess, sys, datetime, platform
doc, tmp, command, idle_cpu, idle_rss, idle_s = sys.argv[1:]
startup = json.load(open(os.path.join(tmp, "startup.json")))
trace = json.load(open(os.path.join(tmp, "trace.json")))
fails = [float(m) for m in re.findall(r"running (\d+)ms", open(os.path.join(tmp, "failover.txt")).read())]
def sh(c):
    try: return subprocess.check_output(c, shell=True, text=True).strip()
    except Exception: return "?"
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
rows = ["| replicas | repeats | p50 | p99 | max |", "|---|---|---|---|---|"]
for r in startup:
    rows.append(f"| {r['replicas']} | {r['repeats']} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms |")
req = trace["store_requests"]
trows = ["| request | count |", "|---|---|"] + [f"| {k} | {req[k]} |" for k in sorted(req)] + [f"| **total** | **{trace['total']}** |"]
steps = ", ".join(f"{s['name']} {s['ms']:.0f} ms" for s in trace["steps"])
section = f"""<!-- jobs:begin -->
<!-- Written by bench/orchestrator.sh; rerun it to replace this section. -->
Run of {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}:

    {command}

- Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}
- Go: {sh('go env GOVERSION')}; herd: commit {sh('git rev-parse --short HEAD')}

**Apply → all replicas running** (`herd up`, exec driver, one node):

{chr(10).join(rows)}

**Agent killed → its replicas running on the other node** (`herd server`, two agents, default
heartbeat 1 s and grace period 5 s, 4 replicas): {", ".join(f"{f:.0f} ms" for f in fails)}.

**Idle `herd up`** (one node, no jobs, over {idle_s} s): CPU {idle_cpu}% of one core, RSS {int(idle_rss)/1024:.0f} MiB.

**Store requests of seed 004's Table 1 trace** (create 3, scale to 10, scale to 5, delete; {trace['seconds']:.1f} s
including the agent's heartbeats, one store write a second; steps: {steps}):

{chr(10).join(trows)}

Kubernetes needed 2,951 store requests for the same trace (seed 004, Table 1).
<!-- jobs:end -->"""
begin, end = "<!-- jobs:begin -->", "<!-- jobs:end -->"
text = open(doc).read()
if begin in text and end in text:
    text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## Orchestrator end to end\n\n" + section + "\n"
open(doc + ".tmp", "w").write(text)
os.replace(doc + ".tmp", doc)
print(f"wrote results into {doc}", file=sys.stderr)
PY
