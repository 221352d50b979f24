"""A deliberately faulty DTLS server for test_target.py: ``dtls-ossl server`` that never resends.

Usage: ``python no_resend_relay.py PORT -- SERVER-ARGV...``, where SERVER-ARGV contains
``{inner}`` for the port the real server binds. A UDP relay on PORT passes everything from the
client, and each of the server's handshake datagrams only the first time: a retransmission
starts with the same record identity (content type, epoch, handshake type and message_seq),
so the client never sees one, as with a server that has no retransmission timer.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

# Run as a program by the target's --server-cmd, outside pytest's pythonpath: the harness may
# not be installed (the Quickstart's test line installs only the library), so find it here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtls_ossl_conformance._target_paths import first_key


def main(argv: list[str]) -> int:
    """Relay between the client on argv[0] and the server started from the rest."""
    port = int(argv[0])
    inner_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inner_sock.bind(("127.0.0.1", 0))
    inner = inner_sock.getsockname()[1]
    inner_sock.close()
    cmd = [a.replace("{inner}", str(inner)) for a in argv[argv.index("--") + 1 :]]
    server = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    # Bind the client's port only once the server listens: the harness sends when it is bound.
    for line in server.stdout or ():
        print(line, end="", flush=True)
        if f":{inner}" in line:
            break
    outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outside.bind(("127.0.0.1", port))
    towards = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    towards.connect(("127.0.0.1", inner))
    client: tuple[str, int] | None = None
    seen: set[object] = set()
    try:
        while server.poll() is None:
            ready, _, _ = select.select([outside, towards], [], [], 0.2)
            if outside in ready:
                data, client = outside.recvfrom(65536)
                with contextlib.suppress(ConnectionRefusedError):
                    towards.send(data)
            if towards in ready:
                try:
                    data = towards.recv(65536)
                except ConnectionRefusedError:
                    continue
                key = first_key(data)
                if key is not None and key[0] in (20, 22) and key in seen:
                    continue
                seen.add(key)
                if client is not None:
                    outside.sendto(data, client)
    finally:
        server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
