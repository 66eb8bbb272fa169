#!/usr/bin/env bash
# `make demo-local`: the example node tree (examples/node: docker and CRI files) tailed to the terminal and
# examples/out/records.ndjson with local.yaml, no server. Appends two live lines, then stops the agent with
# SIGTERM the way Kubernetes does.
set -euo pipefail
bin=${1:?path to the anduin binary}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
rm -rf data out live
cp -a node live
"$bin" validate --config local.yaml
"$bin" run --config local.yaml &
pid=$!
sleep 2
echo "--- appending two live lines ---" >&2
printf '%s stdout F {"level":"info","msg":"appended while running"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >> live/var/log/containers/api-*_payments_server-*.log
printf '{"log":"level=debug msg=\\"also live\\"\\n","stream":"stdout","time":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >> live/var/log/containers/nginx-*_web_nginx-*.log
sleep 2
kill -TERM "$pid"
wait "$pid"
echo "--- $(wc -l < out/records.ndjson) records in examples/out/records.ndjson; checkpoints in examples/data/checkpoints ---" >&2
