#!/bin/bash
# CPU per thread name of a process over a window, from /proc (user + system).
# usage: scripts/thread-cpu.sh PID SECONDS
set -euo pipefail
pid=$1; secs=$2
hz=$(getconf CLK_TCK)
snap() {
  for t in /proc/"$pid"/task/*; do
    name=$(cat "$t/comm"); fields=($(cut -d')' -f2 "$t/stat"))
    echo "${name// /_} $(( ${fields[11]} + ${fields[12]} ))"
  done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort
}
before=$(snap); sleep "$secs"; after=$(snap)
join <(echo "$before") <(echo "$after") | awk -v s="$secs" -v hz="$hz" '{printf "%-20s %5.1f%%\n", $1, 100*($3-$2)/hz/s}'
