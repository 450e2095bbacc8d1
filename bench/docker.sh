#!/usr/bin/env bash
# docker.sh measures how long herd's docker driver takes from `apply` until
# every replica runs, next to plain `docker run` on the same machine.
#
#   herd        `herd up` (one node); `herd bench jobs startup --driver docker`
#               applies a service of N replicas of a tiny FROM scratch image
#               and times until every replica runs (p50/p99 over repeats)
#   docker run  N `docker run -d` of the same image, issued concurrently,
#               timed until `docker ps` counts N running; then removed
#
# The image (herd-bench-sleep:latest) is built here, offline, from a static
# Go program that blocks until SIGTERM. Both sides use the default bridge
# network; a herd allocation also starts a pause container that owns its
# network namespace (see internal/driver/docker), plain docker does not.
#
# Each side has one discarded warm-up run first.
#
# The results replace the section between <!-- docker:begin --> and
# <!-- docker:end --> in docs/benchmarks.md, with the command and machine.
# Containers, the image, processes and temporary files are removed on exit.
#
# Settings (environment variables, defaults in brackets):
#   DOCKER_REPLICAS  replica counts                        [1,10,50]
#   DOCKER_REPEATS   runs per replica count                [5]
#   DOCKER_PORT      port of herd's API server             [28080]
#   DOCKER_DOC       file to write the results into        [docs/benchmarks.md]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DOCKER_REPLICAS=${DOCKER_REPLICAS:-1,10,50}
DOCKER_REPEATS=${DOCKER_REPEATS:-5}
DOCKER_PORT=${DOCKER_PORT:-28080}
DOCKER_DOC=${DOCKER_DOC:-$ROOT/docs/benchmarks.md}
COMMAND="DOCKER_REPLICAS=$DOCKER_REPLICAS DOCKER_REPEATS=$DOCKER_REPEATS bench/docker.sh"
IMAGE=herd-bench-sleep:latest

die() { echo "docker.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is needed to write the report"
command -v docker >/dev/null || die "docker is needed"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer"
[[ $DOCKER_REPLICAS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "DOCKER_REPLICAS must be counts >= 1, comma-separated, not '$DOCKER_REPLICAS'"
[[ $DOCKER_REPEATS =~ ^[1-9][0-9]*$ ]] || die "DOCKER_REPEATS must be a count >= 1, not '$DOCKER_REPEATS'"
[[ $DOCKER_PORT =~ ^[1-9][0-9]*$ ]] || die "DOCKER_PORT must be a port, not '$DOCKER_PORT'"
[ -f "$DOCKER_DOC" ] || die "DOCKER_DOC $DOCKER_DOC does not exist"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-docker.XXXXXX")
# Plain docker containers of this run carry this label, so that only they
# are removed.
RUN_LABEL="herd-bench-docker.run=$(basename "$TMP")"
PAUSE_BEFORE=$(docker images -q herd-pause | sort -u)
UP=""

# herd_containers prints the ids of the containers herd's docker driver
# made for this run: their herd.log.dir lies under $TMP; the pause
# containers share their herd.alloc.uid.
herd_containers() {
	local ids uids
	ids=$(docker ps -aq --filter label=herd.log.dir)
	[ -n "$ids" ] || return 0
	# shellcheck disable=SC2086
	uids=$(docker inspect --format '{{index .Config.Labels "herd.log.dir"}} {{index .Config.Labels "herd.alloc.uid"}}' $ids 2>/dev/null |
		awk -v tmp="$TMP/" 'index($1, tmp) == 1 {print $2}' | sort -u)
	for u in $uids; do docker ps -aq --filter "label=herd.alloc.uid=$u"; done | sort -u
}

cleanup() {
	set +e
	if [ -n "$UP" ] && kill -0 "$UP" 2>/dev/null; then
		# herd up stops its tasks on SIGTERM; SIGKILL if it hangs.
		kill -TERM "$UP"
		for _ in $(seq 1 100); do kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$UP" 2>/dev/null
		wait "$UP" 2>/dev/null
	fi
	local ids
	ids=$( { docker ps -aq --filter "label=$RUN_LABEL"; herd_containers; } | sort -u)
	# shellcheck disable=SC2086
	[ -z "$ids" ] || docker rm -f $ids 2>/dev/null >/dev/null
	docker rmi -f "$IMAGE" >/dev/null 2>&1
	# The pause image herd built, unless it was there before this run (or a
	# container still uses it: rmi without -f refuses then).
	for img in $(docker images -q herd-pause | sort -u); do
		grep -qx "$img" <<<"$PAUSE_BEFORE" || docker rmi "$img" >/dev/null 2>&1
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building herd" >&2
# Static, so that the docker driver can build its pause image FROM scratch.
CGO_ENABLED=0 go build -o "$TMP/herd" ./cmd/herd
HERD="$TMP/herd"

echo "building $IMAGE" >&2
mkdir -p "$TMP/sleeper" "$TMP/image"
cat >"$TMP/sleeper/main.go" <<'GO'
// Command sleeper blocks until SIGTERM or SIGINT, then exits 0.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
}
GO
printf 'module sleeper\n\ngo 1.21\n' >"$TMP/sleeper/go.mod"
(cd "$TMP/sleeper" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags=-s -o "$TMP/image/sleeper" .)
printf 'FROM scratch\nCOPY sleeper /sleeper\nENTRYPOINT ["/sleeper"]\n' >"$TMP/image/Dockerfile"
docker build -q -t "$IMAGE" "$TMP/image" >/dev/null

# wait_docker_node waits until the API server at $1 lists a ready node
# offering the docker driver.
wait_docker_node() {
	for _ in $(seq 1 300); do
		if "$HERD" get nodes --server "$1" 2>/dev/null | grep -w ready | grep -qw docker; then return 0; fi
		sleep 0.1
	done
	die "no ready node with the docker driver at $1 (see $TMP/up.log)"
}

API="127.0.0.1:$DOCKER_PORT"
echo "herd up" >&2
"$HERD" up --data-dir "$TMP/up" --listen "$API" --store-listen "http://127.0.0.1:0" --name bench-docker \
	>"$TMP/up.log" 2>&1 &
UP=$!
wait_docker_node "http://$API"

# One discarded run first: herd's first docker task builds the pause image.
echo "herd: warm-up" >&2
"$HERD" bench jobs startup --server "http://$API" --driver docker --image "$IMAGE" \
	--replicas 1 --repeats 1 >/dev/null || die "herd bench jobs startup (warm-up) failed"
echo "herd: startup $DOCKER_REPLICAS x $DOCKER_REPEATS" >&2
if ! "$HERD" bench jobs startup --server "http://$API" --driver docker --image "$IMAGE" \
	--replicas "$DOCKER_REPLICAS" --repeats "$DOCKER_REPEATS" --json >"$TMP/herd.json"; then
	tail -n 20 "$TMP/up.log" >&2
	die "herd bench jobs startup failed"
fi
# Stop herd before timing plain docker, so that the two do not share the
# machine.
kill -TERM "$UP"
wait "$UP" || true
UP=""

# running_count prints how many containers of this run are running.
running_count() { docker ps -q --filter "label=$RUN_LABEL" --filter status=running | wc -l; }

# docker_run_once starts $1 containers concurrently and prints the
# milliseconds until all run; it removes them afterwards.
docker_run_once() {
	local n=$1 pids=() start end i
	start=$(date +%s%N)
	for i in $(seq 1 "$n"); do
		docker run -d --label "$RUN_LABEL" "$IMAGE" >/dev/null &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p" || die "docker run failed"; done
	for _ in $(seq 1 6000); do
		[ "$(running_count)" -ge "$n" ] && break
		sleep 0.01
	done
	[ "$(running_count)" -ge "$n" ] || die "$n containers did not all run"
	end=$(date +%s%N)
	echo $(((end - start) / 1000))
	# shellcheck disable=SC2046
	docker rm -f $(docker ps -aq --filter "label=$RUN_LABEL") >/dev/null
}

echo "docker run: warm-up" >&2
docker_run_once 1 >/dev/null || die "docker run (warm-up) failed"
echo "docker run: $DOCKER_REPLICAS x $DOCKER_REPEATS" >&2
: >"$TMP/docker.txt"
for n in ${DOCKER_REPLICAS//,/ }; do
	for _ in $(seq 1 "$DOCKER_REPEATS"); do
		us=$(docker_run_once "$n") || die "docker run of $n containers failed"
		echo "$n $us" >>"$TMP/docker.txt"
	done
done

python3 - "$DOCKER_DOC" "$TMP" "$COMMAND" "$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')" <<'PY'
import json, math, os, subprocess, sys, datetime, platform
doc, tmp, command, docker_version = sys.argv[1:]
herd = json.load(open(os.path.join(tmp, "herd.json")))
samples = {}
for line in open(os.path.join(tmp, "docker.txt")):
    n, us = line.split()
    samples.setdefault(int(n), []).append(int(us) / 1000)
def pct(xs, p):
    # The rank rule of internal/benchkv: ceil(p% of n), at least 1.
    xs = sorted(xs)
    rank = max(1, min(len(xs), math.ceil(round(p / 100 * len(xs) * 1e6) / 1e6)))
    return xs[rank - 1]
def sh(c):
    try: return subprocess.check_output(c, shell=True, text=True, stderr=subprocess.DEVNULL).strip()
    except Exception: return "?"
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
rows = ["| replicas | herd p50 | herd p99 | docker run p50 | docker run p99 | ratio (p50) |", "|---|---|---|---|---|---|"]
for r in herd:
    d = samples[r["replicas"]]
    d50, d99 = pct(d, 50), pct(d, 99)
    ratio = f"{r['p50_ms'] / d50:.2f}×" if d50 > 0 else "?"
    rows.append(f"| {r['replicas']} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {d50:.0f} ms | {d99:.0f} ms | {ratio} |")
repeats = herd[0]["repeats"] if herd else 0
section = f"""<!-- docker:begin -->
<!-- Written by bench/docker.sh; rerun it to replace this section. -->
Run of {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}:

    {command}

- Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; Docker {docker_version}
- Go: {sh('go env GOVERSION')}; herd: commit {sh('git rev-parse --short HEAD')} (built with `CGO_ENABLED=0`)

**Apply → all replicas running, docker driver** (`herd up`, one node, {repeats} runs per count after a warm-up), next to
the same number of `docker run -d` issued at once and timed until `docker ps` shows them all running.
The image is a static Go program FROM scratch that sleeps until SIGTERM (pull policy `never`). Each herd
allocation also starts a pause container that holds its network namespace; plain docker does not. Ratio
is herd p50 / docker run p50.

{chr(10).join(rows)}
<!-- docker:end -->"""
begin, end = "<!-- docker:begin -->", "<!-- docker:end -->"
text = open(doc).read()
if begin in text and end in text:
    text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## Docker driver: apply → running\n\n" + section + "\n"
open(doc + ".tmp", "w").write(text)
os.replace(doc + ".tmp", doc)
print(f"wrote results into {doc}", file=sys.stderr)
PY
