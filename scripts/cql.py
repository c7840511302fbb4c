#!/usr/bin/env python3
"""A minimal CQL client (native protocol v4, standard library only).

Runs one statement against a Cassandra node and prints the rows, one per line,
columns separated by ' | ' (blobs as 0x-hex). Exit status: 0 on success, 1 on
a server error (including a refused login), 2 when the node cannot be reached
(including a failed TLS handshake). Used by scripts/cassandra.

  --user U --password P        log in (SASL PLAIN) when the node asks for it
  --tls --ca FILE              TLS, verifying the node's certificate against FILE
  --cert FILE --key FILE       client certificate and key (mutual TLS)
  --consistency LEVEL          ONE (default), QUORUM, ALL, LOCAL_ONE, ...
"""
import argparse
import ipaddress
import socket
import ssl
import struct
import sys
import uuid

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT = 0x07, 0x08
OP_AUTH_CHALLENGE, OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0E, 0x0F, 0x10
CONSISTENCY = {
    "ANY": 0x0000,
    "ONE": 0x0001,
    "TWO": 0x0002,
    "THREE": 0x0003,
    "QUORUM": 0x0004,
    "ALL": 0x0005,
    "LOCAL_QUORUM": 0x0006,
    "EACH_QUORUM": 0x0007,
    "SERIAL": 0x0008,
    "LOCAL_SERIAL": 0x0009,
    "LOCAL_ONE": 0x000A,
}


class ServerError(Exception):
    """The server answered with an ERROR frame or refused the login."""


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
    if k == 0x10 and len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
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


def error_text(body):
    r = Reader(body)
    code = r.int()
    return "error 0x%04x: %s" % (code, r.string())


def connect(args):
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    if not args.tls:
        return sock
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    try:
        return ctx.wrap_socket(sock, server_hostname=args.host)
    except BaseException:
        sock.close()
        raise


def handshake(sock, args):
    startup = struct.pack(">H", 1)
    for s in ("CQL_VERSION", "3.0.0"):
        startup += struct.pack(">H", len(s)) + s.encode()
    sock.sendall(frame(1, OP_STARTUP, startup))
    opcode, body = recv_frame(sock)
    if opcode == OP_READY:
        return
    if opcode == OP_ERROR:
        raise ServerError(error_text(body))
    if opcode != OP_AUTHENTICATE:
        raise ConnectionError("unexpected reply to STARTUP (opcode %d)" % opcode)
    if args.user is None:
        raise ServerError(
            "the node requires authentication (%s); pass --user and --password"
            % Reader(body).string()
        )
    token = b"\0" + args.user.encode() + b"\0" + (args.password or "").encode()
    sock.sendall(frame(1, OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token))
    opcode, body = recv_frame(sock)
    if opcode == OP_AUTH_SUCCESS:
        return
    if opcode == OP_ERROR:
        raise ServerError(error_text(body))
    raise ServerError("unexpected reply to AUTH_RESPONSE (opcode %d)" % opcode)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--ca", help="PEM file of the CA(s) that signed the node's certificate")
    ap.add_argument("--cert", help="PEM client certificate (mutual TLS)")
    ap.add_argument("--key", help="PEM key of --cert")
    ap.add_argument("--consistency", default="ONE", type=str.upper, choices=sorted(CONSISTENCY))
    ap.add_argument("statement")
    args = ap.parse_args()
    if (args.ca or args.cert) and not args.tls:
        ap.error("--ca and --cert need --tls")
    if args.tls and not args.ca:
        ap.error("--tls needs --ca")
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    sock = None
    try:
        sock = connect(args)
        handshake(sock, args)
        q = args.statement.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", CONSISTENCY[args.consistency], 0)
        sock.sendall(frame(2, OP_QUERY, body))
        opcode, body = recv_frame(sock)
    except ServerError as e:
        print("cql: %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 1
    except (OSError, ConnectionError) as e:
        print("cql: cannot reach %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 2
    finally:
        if sock is not None:
            sock.close()
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
