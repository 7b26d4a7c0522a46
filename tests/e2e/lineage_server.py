"""A minimal OpenLineage collector for the tests: accepts POST /api/v1/lineage and appends each
body (one JSON event) as a line to OUT_FILE; anything else is a 404. Prints the port it listens
on, then serves until killed.

    lineage_server.py OUT_FILE
"""
import http.server
import json
import sys

out = sys.argv[1]


class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/api/v1/lineage":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        json.loads(body)  # a collector refuses what is not JSON
        with open(out, "a") as f:
            f.write(body.decode() + "\n")
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
print(server.server_address[1], flush=True)
server.serve_forever()
