#!/usr/bin/env bash
# Runs the bundled example: tails examples/logs (docker and CRI files), lifts JSON/logfmt messages,
# writes examples/out/records.ndjson and prints records; appends a few live lines, then stops the
# agent with SIGTERM the way Kubernetes does.
set -euo pipefail
bin=${1:?path to the anduin binary}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
rm -rf data out live
mkdir -p live
cp logs/*.log live/
"$bin" validate --config anduin.yaml
"$bin" run --config anduin.yaml &
pid=$!
sleep 2
echo "--- appending two live lines ---" >&2
printf '%s stdout F {"level":"info","msg":"appended while running"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >> live/api_payments_server-9f8e7d.log
printf '{"log":"level=debug msg=\\"also live\\"\\n","stream":"stdout","time":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >> live/web_default_nginx-1a2b3c.log
sleep 2
kill -TERM "$pid"
wait "$pid"
echo "--- $(wc -l < out/records.ndjson) records in examples/out/records.ndjson; checkpoints in examples/data/checkpoints ---" >&2
