#!/usr/bin/env python3
"""A double of the fileserver challenge's backend file server, with every habit that matters to a gateway.

Run five of these on one --dir to get the challenge's setup: five slow file servers sharing one volume. Each one:

- sleeps --latency-ms (333) at the start of every request, before it looks at the name or the body;
- answers 429 at once (no sleep, body not read) when more than --max-in-flight (15) requests are in its handlers;
- keeps, per process, a cache of the names it knows exist: a PUT adds the name, a DELETE removes it, a GET of a name
  it does not know checks the disk (404 when the file is missing) and adds it. A GET of a name it knows opens the
  file, and when that fails (the file was deleted through another process) answers **200** with the error text as the
  body (`open /dir/name: no such file or directory`), the way the Go server writes the error into the response;
- locks names per process only (readers share, writers exclude): nothing orders two processes;
- PUT truncates the file, then copies the body from the socket into it 32 KiB at a time, so a reader in another
  process sees an empty or short file while a write runs; a body whose length differs from its Content-Length (or a
  chunked one, whose ContentLength is -1 in Go) answers 500 after the bytes were written;
- GET streams the file as it is when opened: `Transfer-Encoding: chunked` with no Content-Length once the file
  reaches 2048 bytes (Go's net/http buffers 2 KiB before it must choose), Content-Length for smaller ones;
- DELETE answers 200 whether or not the file existed;
- a name the file system refuses (over 255 bytes) answers 500 on PUT;
- HEAD and other methods on a file route answer 405 (httprouter); other paths 404 `404 page not found`;
- after a handler that left more than 256 KiB of the request body unread, closes the connection (net/http).

It prints `listening on 127.0.0.1:PORT` once bound (--port 0 picks a free port) and, with --parent-pid, exits when that
process is no longer its parent.
"""
import argparse
import errno
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTE = "/api/fileserver/"
COPY_CHUNK = 32 * 1024
CHUNKING_THRESHOLD = 2048
MAX_DISCARD = 256 * 1024


class NameLocks:
    """Readers-writer locks per name, made on demand, for this process only."""

    def __init__(self):
        self.mutex = threading.Lock()
        self.conditions = {}

    def _entry(self, name):
        with self.mutex:
            entry = self.conditions.get(name)
            if entry is None:
                entry = [threading.Condition(), 0, False, 0]  # condition, readers, writer, users
                self.conditions[name] = entry
            entry[3] += 1
            return entry

    def _done(self, name, entry):
        with self.mutex:
            entry[3] -= 1
            if entry[3] == 0:
                del self.conditions[name]

    def acquire(self, name, exclusive):
        entry = self._entry(name)
        condition = entry[0]
        with condition:
            if exclusive:
                while entry[1] > 0 or entry[2]:
                    condition.wait()
                entry[2] = True
            else:
                while entry[2]:
                    condition.wait()
                entry[1] += 1
        return entry

    def release(self, name, entry, exclusive):
        condition = entry[0]
        with condition:
            if exclusive:
                entry[2] = False
            else:
                entry[1] -= 1
            condition.notify_all()
        self._done(name, entry)


class State:
    def __init__(self, directory, latency, max_in_flight):
        self.directory = directory
        self.latency = latency
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.counter_lock = threading.Lock()
        self.known = set()
        self.known_lock = threading.Lock()
        self.locks = NameLocks()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):
        pass

    def version_string(self):
        return ""

    # -- plumbing

    def send_plain(self, status, body=b"", close=False):
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        if body:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)

    def body_length(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else 0

    def body_chunks(self):
        """The request body, as it arrives from the socket."""
        length = self.body_length()
        if length is None:
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining > 0:
                    chunk = self.rfile.read(min(COPY_CHUNK, remaining))
                    if not chunk:
                        raise ConnectionError("body ended early")
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline(65537)
        else:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(COPY_CHUNK, remaining))
                if not chunk:
                    raise ConnectionError("body ended early")
                remaining -= len(chunk)
                yield chunk

    def finish_unread_body(self, consumed):
        """net/http after a handler: discard a small unread body, close the connection after a large one."""
        if consumed:
            return
        length = self.body_length()
        if length is None or length > MAX_DISCARD:
            self.close_connection = True
            return
        if length:
            self.rfile.read(length)

    def name(self):
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        if not path.startswith(ROUTE):
            return None
        name = path[len(ROUTE):]
        if "/" in name:
            return None
        return name

    def enter(self):
        state = self.server.state
        with state.counter_lock:
            if state.in_flight >= state.max_in_flight:
                return False
            state.in_flight += 1
            return True

    def leave(self):
        state = self.server.state
        with state.counter_lock:
            state.in_flight -= 1

    def route(self, operation):
        name = self.name()
        if name is None:
            self.finish_unread_body(False)
            self.send_plain(404, b"404 page not found\n", close=self.close_connection)
            return
        if operation is None:
            self.finish_unread_body(False)
            self.send_response_only(405)
            self.send_header("Allow", "DELETE, GET, OPTIONS, PUT")
            self.send_header("Content-Length", "0")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            return
        if not self.enter():
            self.finish_unread_body(False)
            self.send_plain(429, close=self.close_connection)
            return
        try:
            time.sleep(self.server.state.latency)
            operation(name)
        finally:
            self.leave()

    # -- the three operations

    def put(self, name):
        state = self.server.state
        if name == "":
            self.finish_unread_body(False)
            self.send_plain(400, close=self.close_connection)
            return
        with state.known_lock:
            state.known.add(name)
        entry = state.locks.acquire(name, True)
        consumed = False
        try:
            path = os.path.join(state.directory, name)
            try:
                handle = open(path, "wb", buffering=0)
            except OSError:
                self.finish_unread_body(False)
                self.send_plain(500, close=self.close_connection)
                return
            written = 0
            with handle:
                for chunk in self.body_chunks():
                    handle.write(chunk)
                    written += len(chunk)
            consumed = True
            expected = self.body_length()
            if expected is None or expected != written:
                self.send_plain(500)
                return
            self.send_plain(201)
        except (ConnectionError, ValueError):
            self.close_connection = True
        finally:
            state.locks.release(name, entry, True)

    def get(self, name):
        state = self.server.state
        self.finish_unread_body(False)
        if name == "":
            self.send_plain(400, close=self.close_connection)
            return
        entry = state.locks.acquire(name, False)
        try:
            path = os.path.join(state.directory, name)
            with state.known_lock:
                known = name in state.known
            if not known:
                if not os.path.isfile(path):
                    self.send_plain(404, close=self.close_connection)
                    return
                with state.known_lock:
                    state.known.add(name)
            try:
                handle = open(path, "rb")
            except OSError as error:
                text = "open %s: %s" % (path, os.strerror(error.errno).lower())
                self.send_plain(200, text.encode(), close=self.close_connection)
                return
            with handle:
                first = handle.read(CHUNKING_THRESHOLD)
                self.send_response_only(200)
                self.send_header("Date", self.date_time_string())
                self.send_header("Content-Type", "application/octet-stream")
                if len(first) < CHUNKING_THRESHOLD:
                    self.send_header("Content-Length", str(len(first)))
                    self.end_headers()
                    self.wfile.write(first)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = first
                while chunk:
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    chunk = handle.read(COPY_CHUNK)
                self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        finally:
            state.locks.release(name, entry, False)

    def delete(self, name):
        state = self.server.state
        self.finish_unread_body(False)
        if name == "":
            self.send_plain(400, close=self.close_connection)
            return
        with state.known_lock:
            state.known.discard(name)
        entry = state.locks.acquire(name, True)
        try:
            try:
                os.remove(os.path.join(state.directory, name))
            except OSError as error:
                if error.errno != errno.ENOENT:
                    self.send_plain(500, close=self.close_connection)
                    return
            self.send_plain(200, close=self.close_connection)
        finally:
            state.locks.release(name, entry, True)

    def do_PUT(self):
        self.route(self.put)

    def do_GET(self):
        self.route(self.get)

    def do_DELETE(self):
        self.route(self.delete)

    def do_HEAD(self):
        self.route(None)

    def do_POST(self):
        self.route(None)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--latency-ms", type=float, default=333)
    parser.add_argument("--max-in-flight", type=int, default=15)
    parser.add_argument(
        "--parent-pid", type=int, default=0,
        help="exit when this process is no longer the parent (given by the parent, so that a parent that dies before "
        "this process starts watching is noticed too)")
    arguments = parser.parse_args()
    os.makedirs(arguments.dir, exist_ok=True)
    server = Server(("127.0.0.1", arguments.port), Handler)
    server.state = State(os.path.abspath(arguments.dir), arguments.latency_ms / 1000, arguments.max_in_flight)
    if arguments.parent_pid:
        threading.Thread(target=watch_parent, args=(arguments.parent_pid,), daemon=True).start()
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
