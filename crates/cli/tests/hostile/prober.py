"""An app that answers its health check and, when asked, attacks what the request names (see attacks.py)."""

import http.server
import json
import os

import attacks


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            return self.answer({"environment": os.environ.get("PREVIEW_ENVIRONMENT"), "uid": os.getuid()})
        if self.path == "/build-results":
            try:
                with open("build-results.json") as f:
                    return self.answer(json.load(f))
            except OSError as error:
                return self.answer({"error": str(error)}, 500)
        self.answer({}, 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.answer(attacks.run(json.loads(self.rfile.read(length) or b"{}")))

    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


# Every address of its network, so that another environment that could route to it would get in.
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
