#!/usr/bin/env python3
"""tls-probe: one TLS connection to a server, offering only what it is told, then one request:
for tests of a server's TLS policy (what it must refuse, and what it must accept).

    tls-probe.py --port N --ca CA.pem [--cert C.pem --key K.pem] [--version 1.0|1.1|1.2|1.3]
                 [--ciphers OPENSSL-CIPHER-LIST]

Prints one JSON line: {"accepted": true, "version": "TLSv1.3", "cipher": "...", "status": "HTTP/1.1 200 OK"}
when the handshake completes and the server answers, else {"accepted": false, "stage":
"handshake" or "request", "reason": OpenSSL's reason (e.g. "TLSV1_ALERT_PROTOCOL_VERSION"),
"error": the whole message}. Exit 0 either way; 2 on bad arguments.

Why Python's ssl module rather than `openssl s_client`: the outcome comes back as fields (the
negotiated version and cipher, the reason of the alert received) instead of text scraped from
s_client's output, which changes between OpenSSL releases; and the request after the handshake
is part of the probe. That request matters: in TLS 1.3 the client's handshake is complete before
the server has checked the client's certificate, so a refused certificate shows only when the
client reads (an alert where the answer should be).

The versions offered below TLS 1.2 need the cipher list to allow their ciphers at security level
0 (pass --ciphers "DEFAULT:@SECLEVEL=0") and an OpenSSL configuration (OPENSSL_CONF) that does not
forbid them: the system policy applies to this client too.
"""
import argparse
import json
import socket
import ssl
import warnings

VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def probe(args: argparse.Namespace) -> dict:
    # Offering TLS 1.0/1.1 is deprecated in Python: here it is the point.
    warnings.simplefilter("ignore", DeprecationWarning)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(args.ca)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    if args.version:
        context.minimum_version = context.maximum_version = VERSIONS[args.version]
    if args.ciphers:
        context.set_ciphers(args.ciphers)  # TLS 1.2 and below; TLS 1.3's suites are apart
    stage = "handshake"
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                version, cipher = tls.version(), tls.cipher()[0]
                stage = "request"
                tls.sendall(b"GET /studies HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                answer = b""
                while b"\r\n" not in answer:
                    piece = tls.recv(4096)
                    if not piece:
                        break
                    answer += piece
                if not answer.startswith(b"HTTP/1.1 "):
                    return {"accepted": False, "stage": stage, "reason": "EOF", "error": f"no answer: {answer[:80]!r}"}
                status = answer.split(b"\r\n")[0].decode(errors="replace")
                return {"accepted": True, "version": version, "cipher": cipher, "status": status}
    except ssl.SSLError as error:
        return {"accepted": False, "stage": stage, "reason": error.reason or type(error).__name__, "error": str(error)}
    except OSError as error:  # reset or closed by the server without an alert
        return {"accepted": False, "stage": stage, "reason": type(error).__name__, "error": str(error)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--version", choices=sorted(VERSIONS))
    parser.add_argument("--ciphers")
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()
    print(json.dumps(probe(args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
