#!/usr/bin/env bash
# Scaling demo: bounded load against the Ingress while printing the HPA and the replica count, so
# one watches the HPA scale the Deployment up and, after the load stops, back down.
#
#   k8s/scale-demo.sh BASE_URL            e.g. k8s/scale-demo.sh http://127.0.0.1:8080
#
# The load stops by itself after DURATION seconds or MAX_REQUESTS requests (curl mode), whichever
# comes first; Ctrl-C stops it at once. Settings, from the environment:
#   DURATION=180      seconds of load
#   CONCURRENCY=16    parallel clients
#   MAX_REQUESTS=500000  request cap (curl mode; hey is bounded by DURATION only)
#   LOAD_PATH=/readyz GET path to hit (/readyz touches PostgreSQL and Redis on every call)
#   INTERVAL=5        seconds between status lines
#   COOLDOWN=420      seconds to keep watching after the load, or until back at minReplicas
#   NAMESPACE=baedal  DEPLOYMENT=baedal  HPA=baedal
# Load tool: `hey` if it is on PATH, else `curl` run in parallel through `xargs -P`.
set -euo pipefail

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0"; }
die() { echo "scale-demo: $*" >&2; exit 1; }

[ $# -eq 1 ] || { usage >&2; exit 2; }
base_url=${1%/}
duration=${DURATION:-180}
concurrency=${CONCURRENCY:-16}
max_requests=${MAX_REQUESTS:-500000}
load_path=${LOAD_PATH:-/readyz}
interval=${INTERVAL:-5}
cooldown=${COOLDOWN:-420}
ns=${NAMESPACE:-baedal}
deploy=${DEPLOYMENT:-baedal}
hpa=${HPA:-baedal}
url=$base_url$load_path
batch=50 # requests per curl process (one kept-alive connection per batch)

for n in "$duration" "$concurrency" "$max_requests" "$interval" "$cooldown"; do
  case $n in '' | *[!0-9]*) die "DURATION, CONCURRENCY, MAX_REQUESTS, INTERVAL and COOLDOWN must be whole numbers" ;; esac
done
command -v kubectl >/dev/null || die "kubectl not found on PATH"
if command -v hey >/dev/null; then
  tool=hey
elif command -v curl >/dev/null && command -v xargs >/dev/null; then
  tool=curl
else
  die "need 'hey' or both 'curl' and 'xargs' on PATH"
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/scale-demo.XXXXXX")
load_pid=
cleanup() {
  if [ -n "$load_pid" ]; then
    kill -TERM -- "-$load_pid" 2>/dev/null || true # the load's own process group: xargs, sh, curl
    wait "$load_pid" 2>/dev/null || true
    load_pid=
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'echo; echo "scale-demo: interrupted, load stopped"; exit 130' INT TERM

kubectl -n "$ns" get hpa "$hpa" >/dev/null || die "no HPA $ns/$hpa: apply k8s/ first (see k8s/README.md)"
if command -v curl >/dev/null; then
  curl -fsS -o /dev/null --max-time 5 "$url" || die "$url does not answer 2xx; check the Ingress (k8s/README.md)"
fi

status() { # one line: time, phase, the HPA row, the Deployment's pods
  local row pods
  row=$(kubectl -n "$ns" get hpa "$hpa" --no-headers 2>&1 | tr -s ' ') || true
  pods=$(kubectl -n "$ns" get deploy "$deploy" \
    -o jsonpath='{.status.replicas} pods, {.status.readyReplicas} ready' 2>&1) || true
  printf '%s %-8s hpa: %s | deploy: %s\n' "$(date +%H:%M:%S)" "$1" "$row" "$pods"
}

bound="${duration}s"
if [ "$tool" = curl ]; then bound="${duration}s or $max_requests requests"; fi
echo "scale-demo: $tool, $concurrency clients, $bound, against GET $url"
echo "HPA columns: NAME REFERENCE TARGETS(current/target CPU) MINPODS MAXPODS REPLICAS AGE"
echo "A TARGETS of <unknown> means no metrics yet: metrics-server missing or still warming up."
status start

deadline=$(($(date +%s) + duration))
set -m # the load gets its own process group, so cleanup can stop all of it by that one id
if [ "$tool" = hey ]; then
  (hey -z "${duration}s" -c "$concurrency" "$url" >"$workdir/hey.out" 2>&1 || true) &
else
  sep='?'
  case $url in *\?*) sep='&' ;; esac
  batches=$(((max_requests + batch - 1) / batch))
  # Each xargs job is one curl fetching $batch URLs over one connection (curl's [1-N] globbing).
  # Past the deadline a job exits 255, which makes xargs stop reading more work.
  (seq 1 "$batches" | xargs -P "$concurrency" -n 1 sh -c '
      [ "$(date +%s)" -lt "$1" ] || exit 255
      curl -s -o /dev/null -w "%{http_code}\n" --connect-timeout 3 --max-time 5 "$2[1-$3]"
      exit 0' load "$deadline" "$url${sep}demo=" "$batch" >>"$workdir/codes" 2>"$workdir/xargs.err" || true) &
fi
load_pid=$!
set +m

while kill -0 "$load_pid" 2>/dev/null; do
  if [ "$(date +%s)" -gt $((deadline + 15)) ]; then # belt and braces: never outlive the bound
    kill -TERM -- "-$load_pid" 2>/dev/null || true
  fi
  status load
  sleep "$interval"
done
wait "$load_pid" 2>/dev/null || true
load_pid=

echo "scale-demo: load finished"
if [ "$tool" = hey ]; then
  sed -n '/^Summary:/,/^$/p;/^Status code distribution:/,/^$/p' "$workdir/hey.out"
else
  echo "requests by HTTP status (000 = no answer):"
  sort "$workdir/codes" | uniq -c
fi

min=$(kubectl -n "$ns" get hpa "$hpa" -o jsonpath='{.spec.minReplicas}' 2>/dev/null || echo 1)
echo "scale-demo: watching scale-down for up to ${cooldown}s (HPA waits out its stabilization window first)"
end=$(($(date +%s) + cooldown))
while [ "$(date +%s)" -lt "$end" ]; do
  status cooldown
  current=$(kubectl -n "$ns" get deploy "$deploy" -o jsonpath='{.spec.replicas}' 2>/dev/null || echo)
  if [ "$current" = "$min" ]; then
    echo "scale-demo: back at minReplicas ($min)"
    break
  fi
  sleep "$interval"
done
status end
