#!/usr/bin/env python3
"""Fault-injecting HTTP receiver for the integration tests (127.0.0.1 only).

Prints {"port": N} on stdout once listening, exits when stdin closes. Every POST/PUT to any path
except /_control* is a delivery: the body (gunzipped when Content-Encoding: gzip) is split into
records (ndjson lines, or a JSON array), kept in memory, and answered according to the script:

  POST /_control/script   {"responses": ["429", "500", "hang", "400", "200"], "then": "200"}
      each delivery takes the next scripted answer; when the list is used up, `then` applies.
      "hang" holds the request open for `hang_seconds` (default 30) without answering.
      "400echo" (any status + "echo") answers that status with the request's path and headers
      (Authorization included) in the JSON body, as some receivers do in their errors.
      A refused delivery (anything but 2xx) is not kept.
  GET  /_control/records  {"records": [<record JSON>...], "requests": N, "gzip_requests": N,
                           "auth": [<Authorization headers seen>], "content_types": [...],
                           "batches": [[<records>, <body bytes, gunzipped>] per kept delivery]}
  POST /_control/reset    forget records and counters
"""
import gzip
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"records": [], "requests": 0, "gzip_requests": 0, "auth": [], "content_types": [], "batches": [],
         "responses": [], "then": "200", "hang_seconds": 30.0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"{}", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            return gzip.decompress(raw), True
        return raw, False

    def do_GET(self):
        if self.path.startswith("/_control/records"):
            with lock:
                out = {k: state[k] for k in ("records", "requests", "gzip_requests", "auth", "content_types", "batches")}
            self.reply(200, json.dumps(out).encode())
        else:
            self.reply(404)

    def do_POST(self):
        data, gz = self.body()
        if self.path.startswith("/_control/script"):
            cfg = json.loads(data or b"{}")
            with lock:
                state["responses"] = [str(r) for r in cfg.get("responses", [])]
                state["then"] = str(cfg.get("then", "200"))
                state["hang_seconds"] = float(cfg.get("hang_seconds", 30))
            return self.reply(200)
        if self.path.startswith("/_control/reset"):
            with lock:
                state.update(records=[], requests=0, gzip_requests=0, auth=[], content_types=[], batches=[])
            return self.reply(200)
        with lock:
            state["requests"] += 1
            state["gzip_requests"] += 1 if gz else 0
            state["auth"].append(self.headers.get("Authorization", ""))
            state["content_types"].append(self.headers.get("Content-Type", ""))
            answer = state["responses"].pop(0) if state["responses"] else state["then"]
            hang = state["hang_seconds"]
        if answer == "hang":
            time.sleep(hang)
            return
        if answer.endswith("echo"):
            # A receiver that quotes the request in its error body, credentials included.
            echoed = {"error": "refused", "path": self.path, "headers": dict(self.headers.items())}
            return self.reply(int(answer[:-4]), json.dumps(echoed).encode())
        status = int(answer)
        if 200 <= status < 300:
            text = data.decode("utf-8")
            if text.lstrip().startswith("["):
                recs = json.loads(text)
            else:
                recs = [json.loads(line) for line in text.split("\n") if line.strip()]
            with lock:
                state["records"].extend(recs)
                state["batches"].append([len(recs), len(data)])
        self.reply(status, json.dumps({"status": status}).encode())

    do_PUT = do_POST


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.shutdown()


if __name__ == "__main__":
    main()
