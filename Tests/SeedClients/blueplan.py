#!/usr/bin/env python3
"""A BluePlan Research client written from seed 001 alone (流式响应与实时通信系统).

As a browser page on another origin would: a CORS preflight, then `POST /novachat` with the page's
Origin; and as the seed's own SSEClient (an EventSource) does: `GET` with the request in the URL, no
headers but Accept and, when reconnecting, Last-Event-ID. Events are `data:` lines of
{event_type, agent_source, timestamp, payload}, read with an ordinary SSE library (sseclient-py).
The token is the one Switchboard deviation: `Authorization: Bearer` or `?token=`.

Exits 1 with the reason on the first failure; prints a JSON summary for the test driving it.
"""
import argparse
import json
import sys
import urllib.parse
import uuid

import requests
import sseclient

ORIGIN = "http://blueplan.example:3000"
TYPES = {"llm_chunk", "agent_start", "agent_complete", "error"}


def fail(message):
    print(json.dumps({"failure": message}))
    sys.exit(1)


def expect_cors(response, where):
    allow_origin = response.headers.get("Access-Control-Allow-Origin")
    if allow_origin not in ("*", ORIGIN):
        fail(f"{where}: Access-Control-Allow-Origin is {allow_origin!r}")
    if not response.headers.get("Access-Control-Allow-Headers"):
        fail(f"{where}: no Access-Control-Allow-Headers")


def read(response):
    events = []
    for event in sseclient.SSEClient(response).events():
        data = json.loads(event.data)
        if set(data) != {"event_type", "agent_source", "timestamp", "payload"}:
            fail(f"an event is not {{event_type, agent_source, timestamp, payload}}: {data}")
        if data["event_type"] not in TYPES:
            fail(f"unknown event_type {data['event_type']}")
        events.append({"id": event.id, "data": data})
    return events


def check_run(events, supervisor, where):
    if not events:
        fail(f"{where}: no events")
    first, last = events[0]["data"], events[-1]["data"]
    if (first["event_type"], first["agent_source"]) != ("agent_start", supervisor):
        fail(f"{where}: opens with {first}")
    if (last["event_type"], last["agent_source"]) != ("agent_complete", supervisor):
        fail(f"{where}: ends with {last}")
    # Each agent's llm_chunks: is_complete false, then true on the agent's last chunk.
    agents = {}
    for event in events:
        data = event["data"]
        if data["event_type"] == "llm_chunk":
            agents.setdefault(data["agent_source"], []).append(data["payload"])
    if not agents:
        fail(f"{where}: no llm_chunk")
    for agent, payloads in agents.items():
        flags = [payload["is_complete"] for payload in payloads]
        if flags != [False] * (len(flags) - 1) + [True]:
            fail(f"{where}: {agent}'s is_complete flags are {flags}")
        if any(payload.get("content_type") != "text" or not isinstance(payload.get("content"), str) for payload in payloads):
            fail(f"{where}: {agent}'s llm_chunk payloads are not {{content, content_type, is_complete}}")
    return sorted(agents)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connection-limit", type=int, required=True, help="the gateway's per-user limit")
    args = parser.parse_args()
    auth = {"Authorization": f"Bearer {args.token}"}

    # 1. The page's preflight, then the POST it allows.
    preflight = requests.options(f"{args.http}/novachat", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"}, timeout=10)
    if preflight.status_code not in (200, 204):
        fail(f"preflight answered {preflight.status_code}")
    expect_cors(preflight, "preflight")
    allowed_headers = preflight.headers["Access-Control-Allow-Headers"].lower()
    # A browser never lets the `*` wildcard cover Authorization: it must be named.
    if "authorization" not in allowed_headers or "content-type" not in allowed_headers and "*" not in allowed_headers:
        fail(f"preflight allows headers {allowed_headers!r}")
    if "POST" not in preflight.headers.get("Access-Control-Allow-Methods", "POST"):
        fail("preflight does not allow POST")

    nova = requests.post(
        f"{args.http}/novachat", json={"message": "compare three ways to launch a newsletter"},
        headers={**auth, "Origin": ORIGIN, "Accept": "text/event-stream"}, stream=True, timeout=90)
    if nova.status_code != 200 or not nova.headers.get("Content-Type", "").startswith("text/event-stream"):
        fail(f"POST /novachat answered {nova.status_code} {nova.headers.get('Content-Type')}")
    expect_cors(nova, "POST /novachat")
    nova_events = read(nova)
    nova_agents = check_run(nova_events, "nova3_supervisor", "novachat")

    # An error answer reaches the page too (CORS on errors): no token.
    anonymous = requests.post(f"{args.http}/novachat", json={"message": "hi"}, headers={"Origin": ORIGIN}, timeout=10)
    if anonymous.status_code != 401:
        fail(f"no token answered {anonymous.status_code}")
    expect_cors(anonymous, "401")

    # 2. The seed's SSEClient: new EventSource(url), i.e. a GET with the request in the query.
    conversation = "loomi-seed-" + uuid.uuid4().hex[:8]
    url = f"{args.http}/loomichat?" + urllib.parse.urlencode({
        "message": "help me think through a small garden for a rainy city balcony",
        "conversation_id": conversation, "token": args.token})
    loomi = requests.get(url, headers={"Accept": "text/event-stream", "Origin": ORIGIN}, stream=True, timeout=90)
    if loomi.status_code != 200:
        fail(f"GET /loomichat answered {loomi.status_code}")
    expect_cors(loomi, "GET /loomichat")
    loomi_events = read(loomi)
    loomi_agents = check_run(loomi_events, "loomi_concierge", "loomichat")

    # EventSource reconnects to the same URL with Last-Event-ID: from the middle, the rest exactly;
    # after the run's last event, 204 (which tells an EventSource to stop reconnecting).
    middle = len(loomi_events) // 2
    rest = read(requests.get(url, headers={"Accept": "text/event-stream", "Last-Event-ID": loomi_events[middle - 1]["id"]},
                             stream=True, timeout=60))
    if [event["id"] for event in rest] != [event["id"] for event in loomi_events[middle:]]:
        fail("a reconnect from the middle did not give exactly the rest")
    after_end = requests.get(url, headers={"Accept": "text/event-stream", "Last-Event-ID": loomi_events[-1]["id"]}, timeout=20)
    if after_end.status_code != 204:
        fail(f"a reconnect after the run's end answered {after_end.status_code}")

    # 3. error events carry the seed's {error, error_type, context, retry_count}.
    lost = requests.get(url, headers={"Accept": "text/event-stream", "Last-Event-ID": "gone:99999"}, stream=True, timeout=20)
    errors = read(lost)
    if [event["data"]["event_type"] for event in errors] != ["error"]:
        fail(f"a lost position gave {errors}")
    payload = errors[0]["data"]["payload"]
    if not (isinstance(payload.get("error"), str) and isinstance(payload.get("error_type"), str)
            and isinstance(payload.get("context"), dict) and isinstance(payload.get("retry_count"), int)):
        fail(f"error payload is {payload}")

    # 4. "连接限制: 限制单个用户的连接数": streams held open up to the limit, the next one refused.
    held = []
    for index in range(args.connection_limit):
        held.append(requests.get(f"{args.http}/novachat?" + urllib.parse.urlencode({
            "message": f"hold this stream open {index}", "token": args.token}),
            headers={"Accept": "text/event-stream"}, stream=True, timeout=30))
    if [response.status_code for response in held] != [200] * args.connection_limit:
        fail(f"streams within the limit answered {[response.status_code for response in held]}")
    over = requests.get(f"{args.http}/novachat?" + urllib.parse.urlencode({"message": "one too many", "token": args.token}),
                        headers={"Accept": "text/event-stream"}, timeout=10)
    for response in held:
        response.close()
    if over.status_code != 429:
        fail(f"a stream over the per-user limit answered {over.status_code}")

    print(json.dumps({
        "over_limit_status": over.status_code,
        "nova_agents": nova_agents,
        "nova_last": nova_events[-1]["data"]["payload"].get("status"),
        "loomi_agents": loomi_agents,
        "loomi_events": len(loomi_events),
        "resumed_events": len(rest),
        "after_end_status": after_end.status_code,
        "error_payload_keys": sorted(payload),
        "preflight_allow_headers": preflight.headers["Access-Control-Allow-Headers"],
    }))


if __name__ == "__main__":
    main()
