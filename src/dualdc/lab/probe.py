"""The probe program verify runs inside the lab: listeners on destinations, connections from sources.

It is passed to ``python3 -c`` (the hosts' own Python, or the controller's in the edge
namespaces), reads its job as JSON on stdin and writes JSON lines on stdout, so nothing
is copied into a host. It is bounded: a listener stops at its deadline or when stdin
closes, whichever comes first, and serves at most ``max_events`` connections; a client
makes each connection once (UDP: at most three datagrams), each with a time limit.

Listener job: ``{"mode": "listen", "token": T, "deadline": S, "binds": [[addr, proto, port], ...]}``;
first output line ``{"ready": [[addr, proto, port, "bound" | "in-use" | "error: ..."], ...]}``.

Client job: ``{"mode": "connect", "timeout": S, "probes": [{"id", "src", "dst", "proto", "port",
"token"}, ...]}``; one output line per probe ``{"id", "result"}`` with result ``open``,
``timeout``, ``refused``, ``unreachable``, ``mismatch`` or ``error: ...``.
"""

from __future__ import annotations

SOURCE = r'''
import errno, json, select, socket, sys, threading, time

job = json.loads(sys.stdin.readline())
NTP_REQUEST = b"\x23" + b"\x00" * 47


def listen(job):
    token = job["token"].encode()
    deadline = time.monotonic() + float(job["deadline"])
    max_events = int(job.get("max_events", 2000))
    socks, ready = {}, []
    for addr, proto, port in job["binds"]:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, int(port)))
            if proto == "tcp":
                s.listen(64)
            s.setblocking(False)
            socks[s.fileno()] = (s, proto)
            ready.append([addr, proto, port, "bound"])
        except OSError as exc:
            s.close()
            ready.append([addr, proto, port, "in-use" if exc.errno == errno.EADDRINUSE else f"error: {exc}"])
    print(json.dumps({"ready": ready}), flush=True)
    events = 0
    watch = [sys.stdin] + [s for s, _ in socks.values()]
    while events < max_events:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable, _, _ = select.select(watch, [], [], left)
        for r in readable:
            if r is sys.stdin:
                if not sys.stdin.readline():
                    return
                continue
            s, proto = socks[r.fileno()]
            events += 1
            try:
                if proto == "tcp":
                    conn, _ = s.accept()
                    conn.settimeout(1.0)
                    try:
                        conn.sendall(token)
                    finally:
                        conn.close()
                else:
                    _, peer = s.recvfrom(512)
                    s.sendto(token, peer)
            except OSError:
                pass


def probe(p, timeout):
    kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((p["src"], 0))
        if p["proto"] == "tcp":
            s.settimeout(timeout)
            s.connect((p["dst"], int(p["port"])))
            if not p.get("token"):
                return "open"
            data = b""
            while len(data) < len(p["token"]):
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
            return "open" if data == p["token"].encode() else "mismatch"
        s.connect((p["dst"], int(p["port"])))
        s.settimeout(timeout / 3)
        payload = p["token"].encode() if p.get("token") else NTP_REQUEST
        for _ in range(3):
            s.send(payload)
            try:
                data = s.recv(512)
            except socket.timeout:
                continue
            if not p.get("token") or data == p["token"].encode():
                return "open"
            return "mismatch"
        return "timeout"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return f"error: {exc.strerror or exc}"
    finally:
        s.close()


def connect(job):
    timeout = float(job["timeout"])
    lock = threading.Lock()
    probes = list(job["probes"])

    def worker():
        while True:
            with lock:
                if not probes:
                    return
                p = probes.pop()
            result = probe(p, timeout)
            with lock:
                print(json.dumps({"id": p["id"], "result": result}), flush=True)

    threads = [threading.Thread(target=worker) for _ in range(min(64, len(probes)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if job["mode"] == "listen":
    listen(job)
else:
    connect(job)
'''
