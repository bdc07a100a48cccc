#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A loopback stand-in for the Kubernetes API server's core/v1 Secret GET, for coffer's tests.

It speaks the API's wire contract as real clients expect it (kubectl reads the same Secrets from
it in the tests): HTTPS only, `GET /api/v1/namespaces/{ns}/secrets/{name}` answers a v1 Secret
object with base64 `data`, errors are metav1 `Status` objects with the API server's reasons and
messages (401 Unauthorized, 403 Forbidden, 404 NotFound, 429 TooManyRequests with Retry-After,
500 InternalError), and the documents kubectl asks for besides (/version, /api, /apis, /api/v1, the namespace).

Everything it serves comes from files the test may change while it runs (read at each request):
  DATA/secrets/NS/NAME/FIELD   one file per data field (raw bytes); the directory is the Secret
                               (and DATA/secrets/NS makes namespace NS exist)
  DATA/token                   the bearer token it accepts (whitespace stripped); absent: none
  DATA/forbidden               lines "NS/NAME" that RBAC denies (403)
  DATA/fail/NS/NAME            lines "STATUS [RETRY_AFTER]": each request of that Secret takes
                               (and removes) the first line and answers that error instead
  DATA/hang/NS/NAME            present: requests of that Secret get no answer for 60 s
  DATA/requests.log            appended: "<unix time> GET <path> <status> <auth>" per request,
                               auth being "token", "cert", "bad-token" or "none"
A client certificate signed by --client-ca authenticates too (as kubectl's client-certificate).

Usage: kube_api_server.py --cert C --key K --data DATA [--client-ca CA]
Binds 127.0.0.1 on an ephemeral port and prints the port on its first stdout line.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import socketserver
import ssl
import sys
import threading
import time

LOCK = threading.Lock()
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRET_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets/([^/]+)$")
NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)$")


def status(code, reason, message, details=None):
    """A metav1.Status as the API server writes it for a failed request."""
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code}
    if details is not None:
        obj["details"] = details
    return obj


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-standin/1"

    def log_message(self, fmt, *args):  # quiet: the request log is DATA/requests.log
        pass

    def data(self, *parts):
        return os.path.join(self.server.data_dir, *parts)

    def send_json(self, code, obj, extra_headers=()):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def record(self, code, auth):
        with LOCK, open(self.data("requests.log"), "a") as f:
            f.write("%.3f %s %s %d %s\n" % (time.time(), self.command, self.path, code, auth))

    def authenticate(self):
        """'token' or 'cert' when authenticated, else 'bad-token' or 'none'."""
        header = self.headers.get("Authorization", "")
        try:
            with open(self.data("token")) as f:
                want = f.read().strip()
        except FileNotFoundError:
            want = None
        if header.startswith("Bearer "):
            got = header[len("Bearer "):].strip()
            return "token" if want is not None and got == want else "bad-token"
        if self.connection.getpeercert():
            return "cert"
        return "none"

    def take_failure(self, ns, name):
        path = self.data("fail", ns, name)
        with LOCK:
            try:
                with open(path) as f:
                    lines = [l for l in f.read().splitlines() if l.strip()]
            except FileNotFoundError:
                return None
            if not lines:
                return None
            with open(path, "w") as f:
                f.write("".join(l + "\n" for l in lines[1:]))
        parts = lines[0].split()
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)

    def do_GET(self):
        auth = self.authenticate()
        if auth not in ("token", "cert"):
            self.record(401, auth)
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return
        path = self.path.split("?", 1)[0]
        if path == "/api":
            host, port = self.server.server_address[:2]
            self.record(200, auth)
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                 "serverAddressByClientCIDRs": [
                                     {"clientCIDR": "0.0.0.0/0",
                                      "serverAddress": "%s:%d" % (host, port)}]})
            return
        if path == "/apis":
            self.record(200, auth)
            self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            return
        if path == "/api/v1":
            self.record(200, auth)
            self.send_json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "secrets", "singularName": "secret", "namespaced": True,
                 "kind": "Secret", "verbs": ["create", "delete", "deletecollection", "get",
                                              "list", "patch", "update", "watch"],
                 "storageVersionHash": "S6u1pOWzb84="}]})
            return
        if path == "/version":
            self.record(200, auth)
            self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-standin",
                                 "platform": "linux/amd64"})
            return
        m = NAMESPACE_PATH.match(path)
        if m is not None:
            ns = m.group(1)
            if DNS_LABEL.match(ns) and os.path.isdir(self.data("secrets", ns)):
                self.record(200, auth)
                self.send_json(200, {"kind": "Namespace", "apiVersion": "v1",
                                     "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                                     "status": {"phase": "Active"}})
            else:
                self.record(404, auth)
                self.send_json(404, status(404, "NotFound", 'namespaces "%s" not found' % ns,
                                           {"name": ns, "kind": "namespaces"}))
            return
        m = SECRET_PATH.match(path)
        if m is None:
            self.record(404, auth)
            self.send_json(404, status(404, "NotFound",
                                       "the server could not find the requested resource",
                                       {}))
            return
        ns, name = m.group(1), m.group(2)
        if not DNS_LABEL.match(ns) or "/" in name or name in (".", ".."):
            self.record(404, auth)
            self.send_json(404, status(404, "NotFound", 'secrets "%s" not found' % name,
                                       {"name": name, "kind": "secrets"}))
            return
        if os.path.exists(self.data("hang", ns, name)):
            self.record(0, auth)
            time.sleep(60)
            return
        failure = self.take_failure(ns, name)
        if failure is not None:
            code, retry_after = failure
            self.record(code, auth)
            if code == 429:
                ra = retry_after if retry_after is not None else 1
                self.send_json(429, status(429, "TooManyRequests",
                                           "Too many requests, please try again later.",
                                           {"retryAfterSeconds": ra}),
                               [("Retry-After", str(ra))])
            elif code == 500:
                self.send_json(500, status(500, "InternalError",
                                           "Internal error occurred: etcdserver: request timed out",
                                           {"causes": [{"message": "etcdserver: request timed out"}]}))
            elif code == 503:
                headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
                self.send_json(503, status(503, "ServiceUnavailable",
                                           "the server is currently unable to handle the request",
                                           {}), headers)
            else:
                self.send_json(code, status(code, "InternalError", "injected failure", {}))
            return
        forbidden = set()
        try:
            with open(self.data("forbidden")) as f:
                forbidden = {l.strip() for l in f if l.strip()}
        except FileNotFoundError:
            pass
        if "%s/%s" % (ns, name) in forbidden:
            self.record(403, auth)
            self.send_json(403, status(
                403, "Forbidden",
                'secrets "%s" is forbidden: User "system:serviceaccount:velero:cofferd" cannot '
                'get resource "secrets" in API group "" in the namespace "%s"' % (name, ns),
                {"name": name, "kind": "secrets"}))
            return
        sdir = self.data("secrets", ns, name)
        if not os.path.isdir(sdir):
            self.record(404, auth)
            self.send_json(404, status(404, "NotFound", 'secrets "%s" not found' % name,
                                       {"name": name, "kind": "secrets"}))
            return
        data = {}
        digest = hashlib.sha256()
        for field in sorted(os.listdir(sdir)):
            with open(os.path.join(sdir, field), "rb") as f:
                raw = f.read()
            data[field] = base64.b64encode(raw).decode()
            digest.update(field.encode() + b"\0" + raw)
        st = os.stat(sdir)
        secret = {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": "%s-%s-%s-%s-%s" % tuple(
                    hashlib.sha256(("%s/%s" % (ns, name)).encode()).hexdigest()[i:j]
                    for i, j in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))),
                "resourceVersion": str(int.from_bytes(digest.digest()[:4], "big")),
                "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                   time.gmtime(st.st_ctime)),
            },
            "data": data,
            "type": "Opaque",
        }
        self.record(200, auth)
        self.send_json(200, secret)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--client-ca")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    srv = Server(("127.0.0.1", 0), Handler)
    srv.data_dir = args.data
    # the handshake happens in the handler thread, so a stalled client blocks nobody else
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
