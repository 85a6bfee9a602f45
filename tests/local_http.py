"""A bounded HTTP server on 127.0.0.1 for the download tests (tests/test_hub.py, tests/data/):
nothing leaves the machine. A plain module (tests/ is on sys.path through its conftest.py)."""
import http.server
import threading


class Server:
    """http.server on 127.0.0.1 in a thread: serves ``files`` (name -> bytes); names in ``short``
    announce their full length but send only half and hang up; ``requests`` counts the GETs."""

    def __init__(self):
        self.files, self.short, self.requests = {}, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/").split("/")[-1]
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if name in server.short else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
