"""A server on 127.0.0.1 for the browser's leak tests: a forbidden port that logs everything it gets."""

from __future__ import annotations

import socket
import threading


class ForbiddenServer:
    """A TCP port that logs every connection (and the request line, if any), and a UDP port that logs datagrams."""

    def __init__(self) -> None:
        self.connections: list[str] = []
        self.datagrams: list[bytes] = []
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.tcp.settimeout(0.2)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.port, self.udp_port = self.tcp.getsockname()[1], self.udp.getsockname()[1]
        self._stop = False
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._receive, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            conn.settimeout(0.5)
            try:
                first = conn.recv(200).split(b"\r\n")[0].decode(errors="replace")
            except OSError:
                first = ""
            self.connections.append(first or "(bare connection)")
            conn.close()

    def _receive(self) -> None:
        while not self._stop:
            try:
                self.datagrams.append(self.udp.recvfrom(2048)[0])
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        for thread in self._threads:
            thread.join(2)
        self.tcp.close()
        self.udp.close()
