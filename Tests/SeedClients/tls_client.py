#!/usr/bin/env python3
"""A user's ordinary HTTPS and WSS clients (requests, websockets) against a gateway with its own TLS.

Trusts only the CA given (--ca), as a deployment with a private CA does. Prints `ok <check>` per check
and exits 1 with the reason at the first failure.
"""
import argparse
import json
import ssl
import sys
import time
import uuid

import requests
from websockets.sync.client import connect


def fail(message):
    print(f"failure {message}")
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="https://localhost:PORT")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()

    health = requests.get(f"{args.base}/healthz", verify=args.ca, timeout=10)
    if health.status_code != 200:
        fail(f"/healthz over HTTPS answered {health.status_code}")
    print("ok https")

    try:
        requests.get(f"{args.base}/healthz", timeout=10)
        fail("a client without the CA was not refused")
    except requests.exceptions.SSLError:
        print("ok unknown-ca-refused")

    device = "aa:bb:cc:" + ":".join(uuid.uuid4().hex[i:i + 2] for i in range(0, 6, 2))
    ota = requests.post(f"{args.base}/xiaozhi/ota/", verify=args.ca, timeout=10,
                        headers={"Device-Id": device, "Client-Id": str(uuid.uuid4())},
                        json={"application": {"version": "1.6.0"}, "mac_address": device})
    url = ota.json().get("websocket", {}).get("url", "")
    if ota.status_code != 200 or not url.startswith("wss://"):
        fail(f"the OTA answer over HTTPS names {url!r} (status {ota.status_code})")
    print("ok ota-wss")

    context = ssl.create_default_context(cafile=args.ca)
    ws_url = args.base.replace("https://", "wss://") + f"/ws?token={args.token}"
    with connect(ws_url, ssl=context, open_timeout=10) as ws:
        ws.send(json.dumps({
            "id": "m1", "type": "SEND_MESSAGE", "timestamp": int(time.time() * 1000),
            "data": {"conversationId": f"tls-{uuid.uuid4().hex[:8]}", "content": "hello over tls"},
        }))
        deadline = time.time() + 60
        while True:
            if time.time() > deadline:
                fail("no MESSAGE_STREAM_END over WSS within 60 s")
            frame = json.loads(ws.recv(timeout=max(1, deadline - time.time())))
            if frame.get("type") == "MESSAGE_STREAM_END":
                break
    print("ok wss-stream")


if __name__ == "__main__":
    main()
