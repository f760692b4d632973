"""An app that says which commit answered; in a commit with a file `unhealthy` it never listens."""

import http.server
import json
import os
import time

if os.path.exists("unhealthy"):
    while True:
        time.sleep(3600)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "environment": os.environ.get("PREVIEW_ENVIRONMENT"),
            "commit": os.environ.get("PREVIEW_COMMIT"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
