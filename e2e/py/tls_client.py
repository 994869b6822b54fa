"""A TLS client for the listener-filter e2e test: Python's own `ssl` module.

Usage: tls_client.py PORT SNI ALPN PROXY
  SNI    server name to send, or "-" for none
  ALPN   comma-separated protocols to offer, or "-" for none
  PROXY  "v1" or "v2" to send a PROXY header (192.0.2.10:40001 -> 198.51.100.20:8443)
         before the handshake, or "-"

Connects to 127.0.0.1:PORT, completes the handshake (the server's certificate is not
verified: the test only cares which filter chain answered), reads until the server closes,
and prints what it read. Exits non-zero if the handshake fails.
"""
import socket
import ssl
import struct
import sys


def proxy_header(kind):
    src, dst, sport, dport = "192.0.2.10", "198.51.100.20", 40001, 8443
    if kind == "v1":
        return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()
    if kind == "v2":
        addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs
    return b""


def main():
    port, sni, alpn, proxy = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn != "-":
        ctx.set_alpn_protocols(alpn.split(","))
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    raw.sendall(proxy_header(proxy))
    tls = ctx.wrap_socket(raw, server_hostname=None if sni == "-" else sni)
    out = b""
    while True:
        try:
            chunk = tls.recv(4096)
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    sys.stdout.write(out.decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
