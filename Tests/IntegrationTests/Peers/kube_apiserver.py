#!/usr/bin/env python3
"""A small stand-in for kube-apiserver (pods and namespaces, list + watch), for the integration tests.

127.0.0.1 only, standard library only; HTTPS on the API port with --tls-cert/--tls-key. Prints {"port": N, "control_port": M} once listening and exits
when stdin closes. Objects have the shapes a real kube-apiserver returns (PodList without per-item
kind, watch events {"type","object"} with kind/apiVersion, containerd container IDs, managedFields
and status noise the agent must ignore).

API (port N):
  GET /api/v1/pods?fieldSelector=spec.nodeName%3DNODE[&limit=L&continue=C]      PodList
  GET /api/v1/pods?fieldSelector=...&watch=true&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=T
      chunked stream of newline-delimited events; ends after T seconds. An RV older than the
      last `expire` gets {"type":"ERROR","object":{"kind":"Status",...,"code":410}} (or HTTP 410).
  GET /api/v1/namespaces/NS/pods/NAME                                          one pod (counted as "get")
  GET /api/v1/namespaces[?watch=true...]                                       NamespaceList / watch
  Every request needs "Authorization: Bearer <contents of --token-file>" when a token file is given
  (read at every request, so rewriting it rotates the token); 401 otherwise.

Control (port M; also under /_control on port N while it is up):
  POST /_control/pods            {"name","namespace","node","labels","annotations","containers":[{"name","image",
                                  "status_image","id"}],"owner":{"kind","name"},"uid"} or {"pods":[...]}  -> ADDED
  POST /_control/pods/modify     {"namespace","name","labels"?,"annotations"?}                -> MODIFIED
  POST /_control/pods/delete     {"namespace","name"}                                          -> DELETED
  POST /_control/namespaces      {"name","labels"}                                             -> ADDED/MODIFIED
  POST /_control/expire          {"http_410": false}  every RV so far is too old; open watches get ERROR 410
                                 (http_410: true: open watches end, re-watching from an old RV gets HTTP 410)
  POST /_control/bookmark        open watches get a BOOKMARK at the current RV
  POST /_control/advance         {"n": 1} bump the RV (as writes elsewhere in the cluster do)
  POST /_control/close_watches   open watches end (as at timeoutSeconds)
  POST /_control/token           {"token": "..."} rewrite the token file
  POST /_control/down | /_control/up   stop / resume listening on port N (connections refused)
  GET  /_control/stats           {"list","watch","get","unauthorized","requests":[...],"rv","active_watches"}
"""
import argparse
import hashlib
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cond = threading.Condition()
state = {
    "rv": 1000,
    "pods": {},          # uid -> pod object (without kind/apiVersion)
    "namespaces": {},    # name -> namespace object
    "events": [],        # (rv, resource, type, object)
    "expired_below": 0,
    "expire_seq": 0,
    "http_410": False,
    "bookmark_seq": 0,
    "close_seq": 0,
    "down": False,
    "active_watches": 0,
    "stats": {"list": 0, "watch": 0, "get": 0, "unauthorized": 0, "requests": []},
}
token_file = None
tls_context = None
main_server = None
main_port = 0


def next_rv():
    state["rv"] += 1
    return str(state["rv"])


def hexid(*parts):
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def make_uid(ns, name):
    h = hexid("uid", ns, name, str(time.time_ns()))
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def full_image(image):
    # What containerd reports in status: the normalized reference.
    if "/" not in image:
        image = "docker.io/library/" + image
    elif image.count("/") == 1 and "." not in image.split("/")[0]:
        image = "docker.io/" + image
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        image += ":latest"
    return image


def make_pod(spec):
    name, ns = spec["name"], spec.get("namespace", "default")
    node = spec.get("node", "node-a")
    uid = spec.get("uid") or make_uid(ns, name)
    containers = spec.get("containers") or [{"name": "app", "image": "nginx:1.25"}]
    owner = spec.get("owner")
    owner_refs = []
    if owner:
        # A non-controller owner first: the agent must pick the controller.
        if spec.get("extra_owner"):
            owner_refs.append({"apiVersion": "v1", "kind": "ConfigMap", "name": "unrelated-owner",
                               "uid": make_uid(ns, "cm")})
        owner_refs.append({"apiVersion": "apps/v1", "kind": owner["kind"], "name": owner["name"],
                           "uid": make_uid(ns, owner["name"]), "controller": True, "blockOwnerDeletion": True})
    meta = {
        "name": name,
        "namespace": ns,
        "uid": uid,
        "resourceVersion": "0",
        "creationTimestamp": "2024-05-01T10:00:00Z",
        "labels": spec.get("labels", {}),
        "annotations": dict({"kubectl.kubernetes.io/restartedAt": "2024-05-01T09:59:00Z"}, **spec.get("annotations", {})),
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                           "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}],
    }
    if owner_refs:
        meta["ownerReferences"] = owner_refs
        meta["generateName"] = owner["name"] + "-"
    pod_spec = {
        "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": [{"serviceAccountToken": {
            "expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
        "containers": [{
            "name": c["name"], "image": c["image"],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {},
            "volumeMounts": [{"name": "kube-api-access-x1", "readOnly": True,
                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        } for c in containers],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "serviceAccount": "default", "nodeName": node,
        "securityContext": {}, "schedulerName": "default-scheduler",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300}],
        "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
    }
    statuses = []
    for c in containers:
        if c.get("no_status"):
            continue
        statuses.append({
            "name": c["name"],
            "state": {"running": {"startedAt": "2024-05-01T10:00:05Z"}},
            "lastState": {}, "ready": True, "restartCount": 0,
            "image": c.get("status_image") or full_image(c["image"]),
            "imageID": "docker.io/library/x@sha256:" + hexid("image", c["image"]),
            "containerID": "containerd://" + (c.get("id") or hexid("ctr", uid, c["name"])),
            "started": True,
        })
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                        "lastTransitionTime": "2024-05-01T10:00:06Z"}],
        "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
        "podIP": "10.244.1.17", "podIPs": [{"ip": "10.244.1.17"}],
        "startTime": "2024-05-01T10:00:00Z",
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    }
    return {"metadata": meta, "spec": pod_spec, "status": status}


def with_kind(resource, obj):
    kind = "Pod" if resource == "pods" else "Namespace"
    return dict({"kind": kind, "apiVersion": "v1"}, **obj)


def record(resource, etype, obj):
    """Call with cond held."""
    rv = next_rv()
    obj["metadata"]["resourceVersion"] = rv
    state["events"].append((int(rv), resource, etype, json.loads(json.dumps(obj))))
    cond.notify_all()


def find_pod(ns, name):
    for uid, p in state["pods"].items():
        if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == name:
            return uid, p
    return None, None


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def node_selector(params):
    sel = params.get("fieldSelector", "")
    if sel.startswith("spec.nodeName="):
        return sel[len("spec.nodeName="):]
    return None


def matches(resource, obj, node):
    if resource != "pods" or node is None:
        return True
    return obj.get("spec", {}).get("nodeName") == node


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw or b"{}")

    # --- API ---

    def authorized(self):
        if token_file is None:
            return True
        try:
            with open(token_file) as f:
                want = f.read().strip()
        except OSError:
            want = None
        got = self.headers.get("Authorization", "")
        if want and got == "Bearer " + want:
            return True
        with cond:
            state["stats"]["unauthorized"] += 1
        # Quotes what it was given, as a proxy in front of an API server may: the agent must not log it.
        self.reply(401, status_obj(401, "Unauthorized", "Unauthorized (Authorization: %s)" % got))
        return False

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_control/"):
            return self.control_get(url.path)
        if state["down"]:
            self.close_connection = True
            return
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = [p for p in url.path.split("/") if p]
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if parts == ["api", "v1", "pods"] or parts == ["api", "v1", "namespaces"]:
            resource = parts[2]
            kind = "watch" if params.get("watch") in ("true", "1") else "list"
            with cond:
                state["stats"][kind] += 1
                state["stats"]["requests"].append({"kind": kind, "resource": resource, "token": token,
                                                   "resourceVersion": params.get("resourceVersion", ""),
                                                   "fieldSelector": params.get("fieldSelector", ""),
                                                   "timeoutSeconds": params.get("timeoutSeconds", "")})
            if not self.authorized():
                return
            return self.watch(resource, params) if kind == "watch" else self.list(resource, params)
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            with cond:
                state["stats"]["get"] += 1
                state["stats"]["requests"].append({"kind": "get", "resource": "pods", "token": token})
            if not self.authorized():
                return
            with cond:
                _, p = find_pod(parts[3], parts[5])
                p = json.loads(json.dumps(p)) if p else None
            if p is None:
                return self.reply(404, status_obj(404, "NotFound", 'pods "%s" not found' % parts[5]))
            return self.reply(200, with_kind("pods", p))
        self.reply(404, status_obj(404, "NotFound", "the server could not find the requested resource"))

    def list(self, resource, params):
        node = node_selector(params)
        with cond:
            objs = state["pods"].values() if resource == "pods" else state["namespaces"].values()
            items = [json.loads(json.dumps(o)) for o in objs if matches(resource, o, node)]
            rv = str(state["rv"])
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        start = int(params.get("continue") or 0)
        limit = int(params.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        meta = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
        kind = "PodList" if resource == "pods" else "NamespaceList"
        self.reply(200, {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": page})

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, resource, params):
        node = node_selector(params)
        rv_text = params.get("resourceVersion", "")
        timeout = float(params.get("timeoutSeconds") or 1800)
        with cond:
            start_rv = int(rv_text) if rv_text.isdigit() else state["rv"]
            expired = rv_text not in ("", "0") and start_rv < state["expired_below"]
            http_410 = state["http_410"]
        if expired and http_410:
            return self.reply(410, status_obj(410, "Expired", "too old resource version: %s" % rv_text))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        gone = {"type": "ERROR", "object": status_obj(410, "Expired", "too old resource version: %s" % rv_text)}
        try:
            if expired:
                self.write_chunk(json.dumps(gone).encode() + b"\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            with cond:
                state["active_watches"] += 1
                pos = len(state["events"])
                while pos > 0 and state["events"][pos - 1][0] > start_rv:
                    pos -= 1
                seq = (state["bookmark_seq"], state["close_seq"], state["expire_seq"])
            deadline = time.monotonic() + timeout
            while True:
                out = []
                end = False
                with cond:
                    while (len(state["events"]) == pos and not state["down"] and time.monotonic() < deadline
                           and seq == (state["bookmark_seq"], state["close_seq"], state["expire_seq"])):
                        cond.wait(0.2)
                    for (rv, res, etype, obj) in state["events"][pos:]:
                        if res == resource and matches(resource, obj, node):
                            out.append({"type": etype, "object": with_kind(resource, obj)})
                    pos = len(state["events"])
                    if state["bookmark_seq"] != seq[0]:
                        out.append({"type": "BOOKMARK", "object": {
                            "kind": "Pod" if resource == "pods" else "Namespace", "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(state["rv"]), "creationTimestamp": None}}})
                    if state["expire_seq"] != seq[2]:
                        out.append(gone)
                        end = True
                    if state["close_seq"] != seq[1] or state["down"] or time.monotonic() >= deadline:
                        end = True
                    seq = (state["bookmark_seq"], state["close_seq"], state["expire_seq"])
                    down = state["down"]
                for ev in out:
                    self.write_chunk(json.dumps(ev).encode() + b"\n")
                if down:
                    # As if the server died: no clean end of the chunked body.
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if end:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            with cond:
                if not expired:
                    state["active_watches"] -= 1

    # --- control ---

    def control_get(self, path):
        if path.startswith("/_control/stats"):
            with cond:
                out = dict(state["stats"])
                out["requests"] = list(out["requests"])
                out["rv"] = state["rv"]
                out["active_watches"] = state["active_watches"]
            return self.reply(200, out)
        self.reply(404, {})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        body = self.read_body()
        if not path.startswith("/_control/"):
            return self.reply(405, status_obj(405, "MethodNotAllowed", "read-only test server"))
        try:
            result = control(path[len("/_control/"):], body)
        except (KeyError, ValueError) as e:
            return self.reply(400, {"error": str(e)})
        self.reply(200, result)


def control(action, body):
    global main_server
    if action == "pods":
        specs = body["pods"] if "pods" in body else [body]
        created = []
        with cond:
            for spec in specs:
                _, existing = find_pod(spec.get("namespace", "default"), spec["name"])
                if existing is not None:
                    raise ValueError("pod %s/%s exists" % (spec.get("namespace", "default"), spec["name"]))
                pod = make_pod(spec)
                state["pods"][pod["metadata"]["uid"]] = pod
                record("pods", "ADDED", pod)
                created.append(json.loads(json.dumps(pod)))
        return {"pods": created, "rv": state["rv"]}
    if action == "pods/modify":
        with cond:
            uid, pod = find_pod(body["namespace"], body["name"])
            if pod is None:
                raise KeyError("no pod %s/%s" % (body["namespace"], body["name"]))
            if "labels" in body:
                pod["metadata"]["labels"] = body["labels"]
            if "annotations" in body:
                pod["metadata"]["annotations"] = body["annotations"]
            record("pods", "MODIFIED", pod)
            return {"pod": json.loads(json.dumps(pod)), "rv": state["rv"]}
    if action == "pods/delete":
        with cond:
            uid, pod = find_pod(body["namespace"], body["name"])
            if pod is None:
                raise KeyError("no pod %s/%s" % (body["namespace"], body["name"]))
            del state["pods"][uid]
            record("pods", "DELETED", pod)
            return {"rv": state["rv"]}
    if action == "namespaces":
        with cond:
            name = body["name"]
            ns = state["namespaces"].get(name)
            etype = "MODIFIED" if ns else "ADDED"
            if ns is None:
                ns = {"metadata": {"name": name, "uid": make_uid("", name), "resourceVersion": "0",
                                   "creationTimestamp": "2024-05-01T09:00:00Z"},
                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
                state["namespaces"][name] = ns
            ns["metadata"]["labels"] = dict({"kubernetes.io/metadata.name": name}, **body.get("labels", {}))
            record("namespaces", etype, ns)
            return {"rv": state["rv"]}
    if action == "expire":
        with cond:
            state["http_410"] = bool(body.get("http_410", False))
            next_rv()
            state["expired_below"] = state["rv"]
            if state["http_410"]:
                # End open watches quietly: the client re-watches from its old RV and gets HTTP 410.
                state["close_seq"] += 1
            else:
                state["expire_seq"] += 1
            cond.notify_all()
            return {"rv": state["rv"]}
    if action == "bookmark":
        with cond:
            state["bookmark_seq"] += 1
            cond.notify_all()
            return {"rv": state["rv"]}
    if action == "advance":
        with cond:
            for _ in range(int(body.get("n", 1))):
                next_rv()
            return {"rv": state["rv"]}
    if action == "close_watches":
        with cond:
            state["close_seq"] += 1
            cond.notify_all()
            return {}
    if action == "token":
        if token_file is None:
            raise ValueError("started without --token-file")
        with open(token_file + ".tmp", "w") as f:
            f.write(body["token"])
        import os
        os.replace(token_file + ".tmp", token_file)
        return {}
    if action == "down":
        with cond:
            if state["down"]:
                return {}
            state["down"] = True
            cond.notify_all()
        main_server.shutdown()
        main_server.server_close()
        return {}
    if action == "up":
        with cond:
            if not state["down"]:
                return {}
        main_server = start_main(main_port)
        with cond:
            state["down"] = False
        return {}
    if action == "reset_stats":
        with cond:
            state["stats"] = {"list": 0, "watch": 0, "get": 0, "unauthorized": 0, "requests": []}
        return {}
    raise KeyError("unknown control action " + action)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def start_main(port):
    srv = Server(("127.0.0.1", port), Handler)
    if tls_context is not None:
        srv.socket = tls_context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    global token_file, tls_context, main_server, main_port
    ap = argparse.ArgumentParser()
    ap.add_argument("--token-file")
    ap.add_argument("--tls-cert", help="serve the API port over HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key")
    ap.add_argument("--down", action="store_true", help="start with the API port not listening")
    args = ap.parse_args()
    token_file = args.token_file
    if args.tls_cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)
    main_server = start_main(0)
    main_port = main_server.server_address[1]
    if args.down:
        state["down"] = True
        main_server.shutdown()
        main_server.server_close()
    control_server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=control_server.serve_forever, daemon=True).start()
    print(json.dumps({"port": main_port, "control_port": control_server.server_address[1]}), flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
