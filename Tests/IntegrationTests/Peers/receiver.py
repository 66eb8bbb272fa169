#!/usr/bin/env python3
"""Fault-injecting HTTP receiver for the integration tests (127.0.0.1 only).

Prints {"port": N} on stdout once listening, exits when stdin closes. Every POST/PUT to any path
except /_control* is a delivery: the body (gunzipped when Content-Encoding: gzip) is split into
records (ndjson lines, or a JSON array), kept in memory, and answered according to the script:

  POST /_control/script   {"responses": ["429", "500", "hang", "400", "200"], "then": "200"}
      each delivery takes the next scripted answer; when the list is used up, `then` applies.
      "hang" holds the request open for `hang_seconds` (default 30) without answering.
      "delay_seconds" (default 0) waits that long before every answer (a slow destination).
      "400echo" (any status + "echo") answers that status with the request's path and headers
      (Authorization included) in the JSON body, as some receivers do in their errors.
      A refused delivery (anything but 2xx) is not kept.
  GET  /_control/records  {"records": [<record JSON>...], "requests": N, "gzip_requests": N,
                           "auth": [<Authorization headers seen>], "content_types": [...],
                           "batches": [[<records>, <body bytes, gunzipped>] per kept delivery]}
  POST /_control/reset    forget records and counters

A POST to a path ending in /_bulk is an Elasticsearch bulk request (action line + document per
record). Each scripted answer applies to the whole request:
  "200"            one item per action: 201 (stored under its _id), 409 for an _id already stored
                   (op_type create), and `poison_status` for every item of `poison_index`
  "no_items", "empty_items", "extra_items", "invalid_json", "html"
                   malformed HTTP 200 answers ("errors":false with no items / [] / one item too
                   many; truncated JSON; an HTML page): nothing is stored
  "item400echo"    ("item" + status + "echo") HTTP 200 with every item refused with that status and
                   the reason "request auth was <the Authorization header>", as Elasticsearch words it
  other statuses, "400echo" and "hang" as above
  POST /_control/script also takes "poison_index" (null heals it), "poison_status" (503),
  "poison_echo" (false): true quotes the request's headers (Authorization included) in each poisoned
  item's reason, as a proxy or server that echoes the request in its errors would, and
  "overload_seconds": for that long from now every bulk item is answered 429
  es_rejected_execution_exception (HTTP 200), with the header `Retry-After: <retry_after>` when
  "retry_after" is given (it is also sent with scripted 429 and 503 answers); counted in
  "overload": {"requests": N, "items": N} of GET /_control/bulk.
  GET  /_control/bulk     {"docs": [{"_id", "_index", "doc", "t": stored at, monotonic}], "dup_attempts": N, "requests": N,
                           "request_times": [monotonic seconds...], "item_attempts": {index: N}}
"""
import gzip
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"records": [], "requests": 0, "gzip_requests": 0, "auth": [], "content_types": [], "batches": [],
         "responses": [], "then": "200", "hang_seconds": 30.0, "delay_seconds": 0.0, "request_times": [],
         "docs": {}, "doc_order": [], "dup_attempts": 0, "item_attempts": {},
         "poison_index": None, "poison_status": 503, "poison_echo": False, "overload_until": 0.0, "retry_after": None,
         "overload": {"requests": 0, "items": 0}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle holds the body until the
        # client's delayed ACK (40 ms), and a one-record request takes 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reply(self, status, body=b"{}", ctype="application/json", retry_after=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
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
                out = {k: state[k] for k in ("records", "requests", "gzip_requests", "auth", "content_types", "batches",
                                             "request_times")}
            self.reply(200, json.dumps(out).encode())
        elif self.path.startswith("/_control/bulk"):
            with lock:
                out = {"docs": [state["docs"][i] for i in state["doc_order"]],
                       "dup_attempts": state["dup_attempts"], "requests": state["requests"],
                       "request_times": state["request_times"], "item_attempts": state["item_attempts"],
                       "overload": state["overload"]}
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
                state["delay_seconds"] = float(cfg.get("delay_seconds", 0))
                if "poison_index" in cfg:
                    state["poison_index"] = cfg["poison_index"]
                if "poison_status" in cfg:
                    state["poison_status"] = int(cfg["poison_status"])
                if "poison_echo" in cfg:
                    state["poison_echo"] = bool(cfg["poison_echo"])
                if "overload_seconds" in cfg:
                    state["overload_until"] = time.monotonic() + float(cfg["overload_seconds"])
                if "retry_after" in cfg:
                    state["retry_after"] = cfg["retry_after"]
            return self.reply(200)
        if self.path.startswith("/_control/reset"):
            with lock:
                state.update(records=[], requests=0, gzip_requests=0, auth=[], content_types=[], batches=[],
                             request_times=[], docs={}, doc_order=[], dup_attempts=0, item_attempts={},
                             overload={"requests": 0, "items": 0})
            return self.reply(200)
        with lock:
            state["requests"] += 1
            state["gzip_requests"] += 1 if gz else 0
            state["auth"].append(self.headers.get("Authorization", ""))
            state["content_types"].append(self.headers.get("Content-Type", ""))
            state["request_times"].append(time.monotonic())
            answer = state["responses"].pop(0) if state["responses"] else state["then"]
            hang = state["hang_seconds"]
            delay = state["delay_seconds"]
            retry_after = state["retry_after"]
        if delay > 0:
            time.sleep(delay)
        if answer == "hang":
            time.sleep(hang)
            return
        if self.path.endswith("/_bulk"):
            return self.bulk(data, answer, retry_after)
        if answer.endswith("echo"):
            # A receiver that quotes the request in its error body, credentials included.
            echoed = {"error": "refused", "path": self.path, "headers": dict(self.headers.items())}
            return self.reply(int(answer[:-4]), json.dumps(echoed).encode())
        status = int(answer)
        if status in (429, 503):
            return self.reply(status, json.dumps({"status": status}).encode(), retry_after=retry_after)
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

    def bulk(self, data, answer, retry_after):
        lines = [l for l in data.decode("utf-8").split("\n") if l.strip()]
        actions = []
        for i in range(0, len(lines) - 1, 2):
            action = json.loads(lines[i])
            op, meta = next(iter(action.items()))
            actions.append((op, meta.get("_index", ""), meta.get("_id"), json.loads(lines[i + 1])))
        if answer == "no_items":
            return self.reply(200, b'{"took":1,"errors":false}')
        if answer == "empty_items":
            return self.reply(200, b'{"took":1,"errors":false,"items":[]}')
        if answer == "invalid_json":
            return self.reply(200, b'{"took":1,"errors":false,"items":[{"create":{"status":201}')
        if answer == "html":
            return self.reply(200, b"<html><body><h1>Service temporarily unavailable</h1></body></html>", "text/html")
        if answer.startswith("item") and answer.endswith("echo"):
            st = int(answer[4:-4])
            why = "request auth was %s" % self.headers.get("Authorization", "")
            items = [{op: {"_index": index, "_id": _id, "status": st,
                           "error": {"type": "security_exception", "reason": why}}}
                     for op, index, _id, _ in actions]
            return self.reply(200, json.dumps({"took": 1, "errors": True, "items": items}).encode())
        if answer.endswith("echo"):
            echoed = {"error": "refused", "path": self.path, "headers": dict(self.headers.items())}
            return self.reply(int(answer[:-4]), json.dumps(echoed).encode())
        if answer not in ("200", "extra_items"):
            status = int(answer)
            return self.reply(status, json.dumps({"error": {"type": "scripted", "reason": answer}, "status": status}).encode(),
                              retry_after=retry_after if status in (429, 503) else None)
        with lock:
            overloaded = time.monotonic() < state["overload_until"]
            if overloaded:
                state["overload"]["requests"] += 1
                state["overload"]["items"] += len(actions)
        if overloaded:
            items = [{op: {"_index": index, "_id": _id, "status": 429,
                           "error": {"type": "es_rejected_execution_exception",
                                     "reason": "rejected execution of coordinating operation"}}}
                     for op, index, _id, _ in actions]
            return self.reply(200, json.dumps({"took": 1, "errors": True, "items": items}).encode(), retry_after=retry_after)
        items = []
        errors = False
        with lock:
            for op, index, _id, doc in actions:
                state["item_attempts"][index] = state["item_attempts"].get(index, 0) + 1
                if state["poison_index"] is not None and index == state["poison_index"]:
                    st = state["poison_status"]
                    reason = "[%s][0] primary shard is not active" % index
                    if state["poison_echo"]:
                        reason += "; request headers were " + json.dumps(dict(self.headers.items()))
                    items.append({op: {"_index": index, "_id": _id, "status": st,
                                       "error": {"type": "unavailable_shards_exception", "reason": reason}}})
                    errors = True
                elif _id is not None and _id in state["docs"]:
                    state["dup_attempts"] += 1
                    items.append({op: {"_index": index, "_id": _id, "status": 409,
                                       "error": {"type": "version_conflict_engine_exception",
                                                 "reason": "[%s]: version conflict, document already exists" % _id}}})
                    errors = True
                else:
                    key = _id if _id is not None else "auto-%d" % len(state["doc_order"])
                    if answer == "200":
                        state["docs"][key] = {"_id": key, "_index": index, "doc": doc, "t": time.monotonic()}
                        state["doc_order"].append(key)
                    items.append({op: {"_index": index, "_id": key, "status": 201}})
        if answer == "extra_items":
            items.append({"create": {"_index": "extra", "_id": "extra", "status": 201}})
            errors = False
        self.reply(200, json.dumps({"took": 1, "errors": errors, "items": items}).encode())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.shutdown()


if __name__ == "__main__":
    main()
