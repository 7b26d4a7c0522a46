"""A fault-injecting HTTP proxy for storage tests.

    python3 faultproxy.py <upstream-url>

Forwards every request to the upstream server and prints one JSON line with its own endpoint.
Faults are scheduled through the proxy itself (requests to /__faults never reach upstream):

    POST /__faults  {"kind": "status", "status": 503, "count": 3, "method": "PUT", "path": "_scorch/log"}
    POST /__faults  {"kind": "drop", "count": -1}          # -1: every matching request, until cleared
    POST /__faults  {"kind": "delay", "seconds": 5, "count": 2}
    DELETE /__faults                                        # clear the schedule
    GET /__stats                                            # {"requests": N, "injected": {...}}

`method` and `path` (a substring) narrow which requests a fault applies to. Exits when stdin
closes.
"""
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = urllib.parse.urlparse(sys.argv[1])
LOCK = threading.Lock()
FAULTS = []
STATS = {"requests": 0, "injected": {"status": 0, "drop": 0, "delay": 0}, "log": []}


def take_fault(method, path):
    with LOCK:
        for fault in FAULTS:
            if fault.get("method") and fault["method"] != method:
                continue
            if fault.get("path") and fault["path"] not in path:
                continue
            if fault["count"] == 0:
                continue
            if fault["count"] > 0:
                fault["count"] -= 1
            STATS["injected"][fault["kind"]] += 1
            STATS["log"].append({"kind": fault["kind"], "method": method, "path": path})
            return dict(fault)
    return None


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def control(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with LOCK:
            if self.command == "POST":
                fault = json.loads(body)
                fault.setdefault("count", 1)
                FAULTS.append(fault)
            elif self.command == "DELETE":
                FAULTS.clear()
            reply = json.dumps({"requests": STATS["requests"], "injected": STATS["injected"], "log": STATS["log"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def handle_any(self):
        if self.path.startswith("/__faults") or self.path.startswith("/__stats"):
            return self.control()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with LOCK:
            STATS["requests"] += 1
        fault = take_fault(self.command, urllib.parse.unquote(self.path))
        if fault and fault["kind"] == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault and fault["kind"] == "status":
            reply = f"injected fault {fault['status']}".encode()
            self.send_response(fault["status"])
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        if fault and fault["kind"] == "delay":
            time.sleep(fault["seconds"])
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"endpoint": f"http://127.0.0.1:{port}"}), flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
