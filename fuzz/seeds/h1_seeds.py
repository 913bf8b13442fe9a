#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the HTTP/1.1 fast path's fuzz targets
(h1_request_head, h1_response_head, h1_chunked) into fuzz/corpus/<target>/,
one file per input, named by the SHA-1 of its content as libFuzzer does.

    python3 fuzz/seeds/h1_seeds.py

Valid heads and bodies, and the classic request-smuggling probes: obs-fold,
Content-Length with Transfer-Encoding, `Transfer-Encoding: chunked, chunked`,
duplicate and malformed Content-Length, bare LF and bare CR, too many fields,
Connection-named fields, pipelined requests, and the routes of the fuzzing
configurations (see crates/weir-proxy/src/h1/fuzzing.rs).
"""
import hashlib
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def req(line="GET / HTTP/1.1", fields=("Host: a.test",), body=b"", eol=b"\r\n"):
    head = eol.join([line.encode()] + [f if isinstance(f, bytes) else f.encode() for f in fields])
    return head + eol + eol + body


REQUESTS = [
    req(),
    req("GET /p?q=1 HTTP/1.1", ["Host: a.test:8080", "User-Agent: t", "Accept: */*"]),
    req("HEAD / HTTP/1.1"),
    req("POST /up HTTP/1.1", ["Host: a.test", "Content-Length: 5"], b"hello"),
    req("POST /up HTTP/1.1", ["Host: a.test", "Content-Length: 0"]),
    req("POST /up HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    req("PUT /up HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked", "Expect: 100-continue"]),
    req("POST /up HTTP/1.1", ["Host: a.test", "Expect: 100-continue", "Content-Length: 3"], b"abc"),
    req("POST /up HTTP/1.1", ["Host: a.test", "Expect: nothing", "Content-Length: 3"]),
    # Framing conflicts and smuggling probes.
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 4", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked", "Content-Length: 4"], b"0\r\n\r\n"),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked, chunked"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: gzip, chunked"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked, identity"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: xchunked"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding:  chunked \t"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding: CHUNKED"]),
    req("POST / HTTP/1.1", ["Host: a.test", b"Transfer-Encoding: \x0bchunked"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer-Encoding : chunked"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Transfer_Encoding: chunked", "Content-Length: 3"], b"abc"),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 5", "Content-Length: 5"], b"hello"),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 0", "Content-Length: 44"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 5, 5"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: +5"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 0x5"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 005"], b"hello"),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length:\t5 "], b"hello"),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 99999999999999999999"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 18446744073709551615"]),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: -1"]),
    req("GET / HTTP/1.1", ["Host: a.test", "X-A: 1", " obs-fold: Transfer-Encoding: chunked"]),
    req("GET / HTTP/1.1", ["Host: a.test", "X-A: 1", "\tContent-Length: 5"]),
    req("GET / HTTP/1.1", ["Host: a.test", "Content-Length: 0"], b"GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n"),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 30"], b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"),
    # Line endings.
    req(eol=b"\n"),
    req("POST / HTTP/1.1", ["Host: a.test", "Content-Length: 2"], b"hi", eol=b"\n"),
    b"GET / HTTP/1.1\r\nHost: a.test\nX-A: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\rX-A: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\n\rX-A: b\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nX-N: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Obs: caf\xe9 \xff\r\n\r\n",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1",
    # Host.
    req(fields=["Host:"]),
    req(fields=["Host: a.test", "Host: b.test"]),
    req(fields=["Host: a.test", "host: a.test"]),
    req(fields=["X-A: b"]),
    req(fields=[b"Host: \xff\xfe"]),
    req(fields=["Host: a.test\t"]),
    req(fields=["Host: h.test"]),
    req("GET http://a.test/ HTTP/1.1"),
    req("OPTIONS * HTTP/1.1"),
    req("CONNECT a.test:443 HTTP/1.1", ["Host: a.test:443"]),
    req("GET / HTTP/1.0", []),
    req("GET / HTTP/1.0"),
    req("GET / HTTP/2.0"),
    req("GET / HTTP/1.1 "),
    req("GET  / HTTP/1.1"),
    req("G\x00T / HTTP/1.1"),
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    # Hop-by-hop and Connection-named fields.
    req(fields=["Host: a.test", "Connection: close"]),
    req(fields=["Host: a.test", "Connection: keep-alive, X-Secret", "X-Secret: 1", "Keep-Alive: timeout=5"]),
    req(fields=["Host: a.test", "Connection: content-length", "Content-Length: 2"], body=b"hi"),
    req(fields=["Host: a.test", "Connection: transfer-encoding", "Transfer-Encoding: chunked"]),
    req(fields=["Host: a.test", "Connection: host, x-forwarded-for, date", "Date: x", "X-Forwarded-For: 1.2.3.4"]),
    req(fields=["Host: a.test", "Connection: upgrade", "Upgrade: websocket"]),
    req(fields=["Host: a.test", "Upgrade: h2c"]),
    req(fields=["Host: a.test", b"Connection: close, \xc2\xa0x-a", "X-A: 1"]),
    req(fields=["Host: a.test", b"Connection: \xff"]),
    req(fields=["Host: a.test", "Connection: " + ", ".join(f"x-f{i}" for i in range(12))] + [f"X-F{i}: {i}" for i in range(12)]),
    req(fields=["Host: a.test", "Proxy-Connection: keep-alive", "Proxy-Authorization: Basic eA==", "TE: trailers", "Trailer: X-T"]),
    req(fields=["Host: a.test", "X-Forwarded-For: 1.2.3.4", "X-Forwarded-For: 5.6.7.8", "X-Real-IP: 9.9.9.9",
                "X-Forwarded-Proto: https", "X-Forwarded-Host: evil", "X-Forwarded-Port: 1", "Via: 1.1 other"]),
    req(fields=["Host: a.test", "X-Forwarded-For: "]),
    # Routes of the fuzzing configuration.
    req("GET /key/x?apikey=k&a=1 HTTP/1.1"),
    req("GET /key/x?apikey=k HTTP/1.1"),
    req("GET /key/x?a=1&apikey=%6b HTTP/1.1"),
    req("GET /key/x HTTP/1.1", ["Host: a.test", "apikey: k"]),
    req("GET /key/x HTTP/1.1", ["Host: a.test", "apikey: wrong"]),
    req("GET /rid/x HTTP/1.1", ["Host: a.test", "Origin: http://o.test", "X-Request-Id: given"]),
    req("OPTIONS /rid/x HTTP/1.1", ["Host: a.test", "Origin: http://o.test", "Access-Control-Request-Headers: x"]),
    req("GET /rid/x HTTP/1.1", ["Host: a.test", "Connection: x-request-id", "X-Request-Id: 1"]),
    req("GET /node/x HTTP/1.1"),
    req("GET /rewrite/x HTTP/1.1"),
    req("GET /hash/x HTTP/1.1", ["Host: a.test", "X-User: alice"]),
    req("GET /real/x HTTP/1.1", ["Host: a.test", "X-Real-IP: 198.51.100.1", "X-Forwarded-For: 1.2.3.4"]),
    req("GET /real/x HTTP/1.1", ["Host: a.test", "X-Real-IP: [2001:db8::1]:8080"]),
    req("GET /real/x HTTP/1.1", ["Host: a.test", "X-Real-IP: 1.2.3.4\r\nX-A: b"]),
    req("GET /real/x HTTP/1.1", ["Host: a.test", "X-Real-IP: not-an-ip"]),
    req("GET /x HTTP/1.1", ["Host: a.test", "X-Real-IP: 10.9.9.9"]),
    req("POST /echo/x HTTP/1.1", ["Host: a.test", "Content-Length: 5"], b"hello"),
    req("POST /echo/x HTTP/1.1", ["Host: a.test", "Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    req("HEAD /echo/x HTTP/1.1"),
    req("GET /a/../b/%2e%2e/c//d HTTP/1.1"),
    # Field counts.
    req(fields=["Host: a.test"] + [f"X-{i}: {i}" for i in range(98)]),
    req(fields=["Host: a.test"] + [f"X-{i}: {i}" for i in range(99)]),
    req(fields=["Host: a.test"] + [f"X-{i}: {i}" for i in range(100)]),
    req(fields=["Host: a.test", "X-Long: " + "v" * 8000]),
]


def resp(line="HTTP/1.1 200 OK", fields=(), body=b"", eol=b"\r\n"):
    head = eol.join([line.encode()] + [f if isinstance(f, bytes) else f.encode() for f in fields])
    return head + eol + eol + body


RESPONSES = [
    resp(fields=["Content-Length: 5", "Content-Type: text/plain"], body=b"hello"),
    resp(fields=["Content-Length: 0"]),
    resp(),
    resp(fields=["Transfer-Encoding: chunked"], body=b"5\r\nhello\r\n0\r\n\r\n"),
    resp(fields=["Transfer-Encoding: gzip, chunked"]),
    resp(fields=["Transfer-Encoding: gzip"]),
    resp(fields=["Transfer-Encoding: gzip", "Content-Length: 5"]),
    resp(fields=["Transfer-Encoding: chunked", "Content-Length: 5"]),
    resp(fields=["Content-Length: 5", "Transfer-Encoding: chunked"]),
    resp(fields=["Transfer-Encoding: chunked, gzip"]),
    resp(fields=["Transfer-Encoding: chunked,"]),
    resp(fields=["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"]),
    resp(fields=["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"]),
    resp(fields=["Transfer-Encoding:"]),
    resp(fields=["Content-Length: 5", "Content-Length: 5"]),
    resp(fields=["Content-Length: 5", "Content-Length: 6"]),
    resp(fields=["Content-Length: 5, 5"]),
    resp(fields=["Content-Length: x"]),
    resp(fields=["Transfer-Encoding: gzip", "Content-Length: 1", "Content-Length: 2"]),
    resp(fields=["Content-Length: 18446744073709551615"]),
    resp("HTTP/1.1 204 No Content", ["Content-Length: 5"]),
    resp("HTTP/1.1 204 No Content", ["Transfer-Encoding: chunked"]),
    resp("HTTP/1.1 304 Not Modified", ["Content-Length: 50", "ETag: \"x\""]),
    resp("HTTP/1.1 100 Continue"),
    resp("HTTP/1.1 103 Early Hints", ["Link: </s.css>; rel=preload"]),
    resp("HTTP/1.1 101 Switching Protocols", ["Upgrade: websocket", "Connection: upgrade"]),
    resp("HTTP/1.0 200 OK", ["Content-Length: 2"], body=b"hi"),
    resp("HTTP/1.0 200 OK", ["Connection: keep-alive", "Content-Length: 2"]),
    resp("HTTP/1.0 200 OK", ["Connection: close, keep-alive", "Content-Length: 2"]),
    resp("HTTP/1.0 200 OK", ["Connection: keep-alive", "Connection: close", "Content-Length: 2"]),
    resp(fields=["Connection: close", "Content-Length: 2"]),
    resp(fields=["Connection: close, X-Secret", "X-Secret: 1", "Keep-Alive: timeout=1", "Content-Length: 0"]),
    resp(fields=["Connection: content-length", "Content-Length: 2"]),
    resp(fields=["Connection: transfer-encoding", "Transfer-Encoding: chunked"]),
    resp(fields=["Connection: date, via, x-forwarded-for", "Date: x", "Via: 1.0 n", "X-Forwarded-For: 1", "Content-Length: 0"]),
    resp(fields=[b"Connection: close, \xff", "Content-Length: 0"]),
    resp(fields=[b"Connection: X-Secret, \xff", "X-Secret: 1", "Content-Length: 0"]),
    resp(fields=["Connection: " + ", ".join(f"x-f{i}" for i in range(12)), "Content-Length: 0"] + [f"X-F{i}: {i}" for i in range(12)]),
    resp(fields=["Upgrade: h2c", "Proxy-Connection: close", "TE: trailers", "Trailer: X-T", "Proxy-Authenticate: x", "Content-Length: 0"]),
    resp(fields=["Set-Cookie: a=1", "Set-Cookie: b=2", "Content-Length: 0"]),
    resp(fields=["X-Request-Id: node", "Access-Control-Allow-Origin: *", "Vary: Accept", "Content-Length: 0"]),
    resp(fields=["Content-Length: 0", "X-A: 1", " folded"]),
    resp(fields=["Content-Length: 2"], body=b"hi", eol=b"\n"),
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\nX-A: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\rX-A: 1\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 999 Weird\xff\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 000 Zero\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    resp(fields=[f"X-{i}: {i}" for i in range(100)]),
    resp(fields=["Content-Length: 0"] + [f"X-{i}: {i}" for i in range(99)]),
]

CHUNKED = [
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"5;ext=1\r\nhello\r\n0;x=\"y\"\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
    b"A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\t;a\r\n\r\n",
    b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    b"0000000000000005\r\nhello\r\n0\r\n\r\n",
    b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"10000000000000000\r\n",
    b"-1\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"\r\n",
    b";\r\n",
    b"5\nhello\n0\n\n",
    b"5\r\nhello\n0\r\n\r\n",
    b"5\rhello\r\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",
    b"5\r\nhell\r\n0\r\n\r\n",
    b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    b"0\r\nX-T: 1\n\r\n",
    b"0\r\nX-T: 1\r\n folded\r\n\r\n",
    b"0\r\n\n",
    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"2\r\nhi\r\n0\r\n\r\n0\r\n\r\n",
    b"5 5\r\nhello\r\n0\r\n\r\n",
    b"1\r\n\r\r\n0\r\n\r\n",
    b"3\r\n\r\n\r\r\n0\r\n\r\n",
    b"5\r\nhel",
    b"5\r\nhello\r",
    b"0\r\n\r",
    b"1" * 40 + b"\r\n",
    # Re-framed by the fast path (weir_http::reframe): chunk heads
    # rewritten, extensions and forbidden trailers dropped, the rest refused.
    b"005;ext=1\r\nhello\r\n0000\r\n\r\n",
    b"100000005\r\nhello",
    b"5;a=\x00\r\nhello\r\n0\r\n\r\n",
    b"5;" + b"e" * 65536 + b"\r\nhello\r\n0\r\n\r\n",
    b"0\r\nbad\r\n\r\n",
    b"0\r\nX A: 1\r\n\r\n",
    b"0\r\nX-A: a\rb\r\n\r\n",
    b"0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nX-Ok: 1\r\n\r\n",
    b"0\r\nX-A: " + b"v" * 9000 + b"\r\n\r\n",
]


def write(target, inputs):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for data in inputs:
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
    print(f"{target}: {len(inputs)} seeds")


write("h1_request_head", REQUESTS)
write("h1_response_head", RESPONSES)
write("h1_chunked", CHUNKED)
