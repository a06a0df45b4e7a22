"""fal's official Python client (fal-client, PyPI) against fal's simulator.

The client speaks only https to its queue host (FAL_QUEUE_RUN_HOST), so
this script puts a TLS front on the simulator: a self-signed certificate
for 127.0.0.1 (openssl), trusted through SSL_CERT_FILE, and a small
reverse proxy to FAL_SIM's origin. The request URLs the simulator returns
(status, result, cancel) point at the simulator itself, as fal's point at
its queue. Run by tests/api/clients.rs with FAL_KEY and FAL_SIM; exits
non-zero on any difference.
"""

import http.client
import http.server
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.parse

SIM = urllib.parse.urlsplit(os.environ["FAL_SIM"])  # http://127.0.0.1:PORT/sim/fal
work = tempfile.mkdtemp()
cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
subprocess.run(
    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
     "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
     "-keyout", key, "-out", cert],
    check=True, capture_output=True,
)


class Front(http.server.BaseHTTPRequestHandler):
    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(SIM.hostname, SIM.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = forward

    def log_message(self, *args):
        pass


front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
front.socket = context.wrap_socket(front.socket, server_side=True)
threading.Thread(target=front.serve_forever, daemon=True).start()

# Read by the client when it is imported.
os.environ["FAL_QUEUE_RUN_HOST"] = f"127.0.0.1:{front.server_address[1]}{SIM.path}"
os.environ["SSL_CERT_FILE"] = cert
import fal_client  # noqa: E402

MODEL = "fal-ai/flux/dev"


def expect(ok, what):
    if not ok:
        print(f"unexpected: {what}", file=sys.stderr)
        sys.exit(1)


seen = []
result = fal_client.subscribe(
    MODEL,
    arguments={"prompt": "a fox by the Python client", "image_size": "portrait_16_9", "num_images": 1, "seed": 11},
    with_logs=True,
    on_queue_update=lambda update: seen.append(type(update).__name__),
)
expect(len(result["images"]) == 1 and result["seed"] == 11, result)
image = result["images"][0]
expect(image["height"] > image["width"], image)
expect(seen[0] == "Queued" and "InProgress" in seen and seen[-1] == "Completed", seen)

handle = fal_client.submit(MODEL, arguments={"prompt": "a slow fox #slow"})
status = handle.status(with_logs=True)
expect(type(status).__name__ == "Queued", status)
handle.cancel()
expect(type(handle.status()).__name__ == "Completed", "canceled")

try:
    fal_client.subscribe(MODEL, arguments={"prompt": "a doomed fox #fail"})
    expect(False, "a failed request returned a result")
except fal_client.client.FalClientHTTPError as e:
    expect(e.status_code == 422 and "crashed" in str(e.message), (e.status_code, e.message))

print("fal python client: ok")
