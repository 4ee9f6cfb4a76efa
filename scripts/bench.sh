#!/usr/bin/env bash
# Regenerates every table of BENCHMARKS.md: runs each bench BENCH_RUNS times (default 3),
# measures this machine's fsync and file-creation latency in the same runs, the peak RSS of
# a standalone 1 GiB stream (`/usr/bin/time -v`), and rewrites the part of BENCHMARKS.md
# between its bench.sh markers (nothing else in the file).
#
#   scripts/bench.sh            # about 10 minutes per run on a 2-vCPU VM
#   BENCH_RUNS=5 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-3}
if [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq time
  else
    echo "scripts/bench.sh: please install GNU time (/usr/bin/time) for the peak RSS" >&2
    exit 2
  fi
fi

out=target/bench-runs
rm -rf "$out"
mkdir -p "$out"
cargo bench -p durafile --no-run
for i in $(seq 1 "$runs"); do
  echo "== run $i of $runs" >&2
  cargo bench -p durafile --bench machine | tee "$out/machine-$i.txt"
  cargo bench -p durafile --bench contended | tee "$out/contended-$i.txt"
  rm -rf target/criterion
  cargo bench -p durafile --bench replace
  python3 crates/durafile/benches/tables.py collect target/criterion "$out/criterion-$i.json"
done

# Peak RSS of the durafile stream alone, outside criterion and outside the other streams.
machine=$(cargo bench -p durafile --bench machine --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == "machine":
        print(m["executable"])')
/usr/bin/time -v "$machine" stream-only 2> "$out/rss.txt"

python3 crates/durafile/benches/tables.py render "$out" BENCHMARKS.md
echo "BENCHMARKS.md tables rewritten from $runs runs ($out)" >&2
