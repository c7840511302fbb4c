#!/usr/bin/env python3
"""A minimal CQL client (native protocol v4, standard library only).

Runs one statement against a Cassandra node and prints the rows, one per line,
columns separated by ' | ' (blobs as 0x-hex). Exit status: 0 on success, 1 on
a server error, 2 when the node cannot be reached. Used by scripts/cassandra.
"""
import argparse
import socket
import struct
import sys
import uuid

OP_ERROR, OP_STARTUP, OP_READY, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x07, 0x08
CONSISTENCY_ONE = 0x0001


def frame(stream, opcode, body):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def recv_frame(sock):
    header = recv_exact(sock, 9)
    _, _, _, opcode, length = struct.unpack(">BBhBi", header)
    return opcode, recv_exact(sock, length)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def string(self):
        return self.take(self.short()).decode("utf-8", "replace")

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def option(self):
        kind = self.short()
        if kind == 0x0000:
            return (kind, self.string())
        if kind in (0x20, 0x22):
            return (kind, self.option())
        if kind == 0x21:
            return (kind, self.option(), self.option())
        if kind == 0x30:
            self.string()
            self.string()
            fields = [(self.string(), self.option()) for _ in range(self.short())]
            return (kind, fields)
        if kind == 0x31:
            return (kind, [self.option() for _ in range(self.short())])
        return (kind,)


def render(kind, raw):
    if raw is None:
        return "null"
    k = kind[0]
    if k in (0x01, 0x0D):
        return raw.decode("utf-8", "replace")
    if k in (0x02, 0x05, 0x09, 0x13, 0x14) and len(raw) in (1, 2, 4, 8):
        return str(int.from_bytes(raw, "big", signed=True))
    if k == 0x04:
        return "true" if raw != b"\x00" else "false"
    if k in (0x0C, 0x0F):
        return str(uuid.UUID(bytes=raw))
    return "0x" + raw.hex()


def print_rows(r, quiet):
    flags, ncols = r.int(), r.int()
    if flags & 0x0002:
        r.bytes()
    global_spec = flags & 0x0001
    if global_spec:
        r.string()
        r.string()
    names, kinds = [], []
    for _ in range(ncols):
        if not global_spec:
            r.string()
            r.string()
        names.append(r.string())
        kinds.append(r.option())
    nrows = r.int()
    if quiet:
        return
    print(" | ".join(names))
    for _ in range(nrows):
        print(" | ".join(render(kinds[i], r.bytes()) for i in range(ncols)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("statement")
    args = ap.parse_args()
    try:
        sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
        startup = struct.pack(">H", 1)
        for s in ("CQL_VERSION", "3.0.0"):
            startup += struct.pack(">H", len(s)) + s.encode()
        sock.sendall(frame(1, OP_STARTUP, startup))
        opcode, body = recv_frame(sock)
        if opcode != OP_READY:
            raise ConnectionError("unexpected reply to STARTUP (opcode %d)" % opcode)
        q = args.statement.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", CONSISTENCY_ONE, 0)
        sock.sendall(frame(2, OP_QUERY, body))
        opcode, body = recv_frame(sock)
    except (OSError, ConnectionError) as e:
        print("cql: cannot reach %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 2
    r = Reader(body)
    if opcode == OP_ERROR:
        code = r.int()
        print("cql: error 0x%04x: %s" % (code, r.string()), file=sys.stderr)
        return 1
    if opcode == OP_RESULT and r.int() == 2:
        print_rows(r, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
