#!/bin/bash
# time-start.sh BIN DIR [env...]: seconds from exec to /healthz answering; then SIGTERM.
BIN=$1; DIR=$2; shift 2
start=$(date +%s.%N)
env "$@" RUST_LOG=info $BIN serve --data $DIR --listen 127.0.0.1:18099 > /tmp/time-start.log 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:18099/healthz >/dev/null 2>&1; do
  sleep 0.05
  kill -0 $pid 2>/dev/null || { echo "server exited"; tail -5 /tmp/time-start.log; exit 1; }
done
end=$(date +%s.%N)
cpu=$(awk '{printf "%.2f", ($14+$15)/100}' /proc/$pid/stat)
rss=$(grep VmRSS /proc/$pid/status | awk '{print $2/1024 " MiB"}')
echo "healthz after $(echo "$end - $start" | bc) s, cpu $cpu s (user+sys), RSS $rss, load $(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM $pid; wait $pid
grep -E "snapshot loaded|attached|replayed|checked|listening" /tmp/time-start.log | cut -c1-250
