#!/usr/bin/env python3
"""A chat-centre client written from seed 000 alone (实时数据流设计), not from Switchboard's docs.

It reads the SSE streams with an ordinary SSE library (sseclient-py) by the seed's event names, and
speaks the seed's WebSocket frames with an ordinary WebSocket client. The only thing it knows of
Switchboard is the one deviation every door keeps: the token, given as ?token=.

Checks what the seed promises, exits 1 with the reason on the first failure, and prints a JSON
summary of what it saw (for the test driving it).
"""
import argparse
import json
import sys
import threading
import time
import uuid

import requests
import sseclient
from websockets.sync.client import connect


def fail(message):
    print(json.dumps({"failure": message}))
    sys.exit(1)


def js_length(text):
    # The seed's clients are TypeScript: a string's length is in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def read_sse(url, events, stop_after, done, errors):
    try:
        response = requests.get(url, stream=True, headers={"Accept": "text/event-stream"}, timeout=60)
        if response.status_code != 200:
            errors.append(f"{url}: HTTP {response.status_code}")
            return
        done["opened"].set()
        for event in sseclient.SSEClient(response).events():
            events.append({"id": event.id, "event": event.event, "data": event.data})
            if event.event == stop_after:
                break
        response.close()
    except Exception as error:  # reported to the driver, not swallowed
        errors.append(f"{url}: {error!r}")
    finally:
        done["opened"].set()
        done["finished"].set()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--conversation", default="seed000-" + uuid.uuid4().hex[:8])
    args = parser.parse_args()
    conversation = args.conversation
    base = f"{args.http}/api/v1"
    errors = []

    # The seed's two conversation streams, opened before the message is sent.
    streams = {}
    for name, path, stop_after in [
        ("messages", f"{base}/conversations/{conversation}/messages/stream", "message_complete"),
        ("roles", f"{base}/conversations/{conversation}/roles/activity", "collaboration_complete"),
    ]:
        state = {"events": [], "opened": threading.Event(), "finished": threading.Event()}
        thread = threading.Thread(
            target=read_sse, args=(f"{path}?token={args.token}", state["events"], stop_after, state, errors), daemon=True)
        thread.start()
        streams[name] = state
    for state in streams.values():
        if not state["opened"].wait(20):
            fail("an SSE stream did not open")
    if errors:
        fail("; ".join(errors))

    # The WebSocket: SEND_MESSAGE as the seed's outbound frame {id, type, timestamp, data}.
    ws_url = args.http.replace("http://", "ws://") + f"/ws?token={args.token}"
    frames = []
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({
            "id": "m1", "type": "SEND_MESSAGE", "timestamp": int(time.time() * 1000),
            "data": {"conversationId": conversation,
                     "content": "compare three ways to plan a team offsite and recommend one with a budget"},
        }))
        deadline = time.time() + 90
        while time.time() < deadline:
            frame = json.loads(ws.recv(timeout=max(1, deadline - time.time())))
            frames.append(frame)
            if frame.get("type") == "COLLABORATION_COMPLETED":
                break
    for state in streams.values():
        if not state["finished"].wait(30):
            fail("an SSE stream did not reach its last event")
    if errors:
        fail("; ".join(errors))

    # --- WebSocket frames (seed 000, 消息类型定义 and 协调事件流) ---
    types = [frame.get("type") for frame in frames]
    for frame in frames:
        for key in ("id", "type", "timestamp", "data"):
            if key not in frame:
                fail(f"a frame without {key}: {frame}")
    chunks = [frame["data"] for frame in frames if frame["type"] == "MESSAGE_STREAM_CHUNK"]
    if not chunks:
        fail(f"no MESSAGE_STREAM_CHUNK; got {types}")
    offset = 0
    for chunk in chunks:
        if chunk["position"] != offset:
            fail(f"MESSAGE_STREAM_CHUNK position {chunk['position']}, expected the character offset {offset}")
        offset += js_length(chunk["chunk"])
    start = next(frame["data"] for frame in frames if frame["type"] == "MESSAGE_STREAM_START")
    end = next(frame["data"] for frame in frames if frame["type"] == "MESSAGE_STREAM_END")
    if end["finalMessage"]["content"] != "".join(chunk["chunk"] for chunk in chunks):
        fail("finalMessage is not the chunks joined")
    initiated = next((frame["data"] for frame in frames if frame["type"] == "COLLABORATION_INITIATED"), None)
    if initiated is None:
        fail(f"no COLLABORATION_INITIATED; got {sorted(set(types))}")
    if not (isinstance(initiated["pattern"], str) and isinstance(initiated["participants"], list)
            and initiated["participants"] and isinstance(initiated["estimatedDuration"], (int, float))):
        fail(f"COLLABORATION_INITIATED is not {{pattern, participants, estimatedDuration}}: {initiated}")
    progress = [frame["data"] for frame in frames if frame["type"] == "COLLABORATION_PROGRESS"]
    for update in progress:
        for key, kind in (("completedTasks", list), ("activeTasks", list), ("pendingTasks", list), ("overallProgress", (int, float))):
            if not isinstance(update.get(key), kind):
                fail(f"COLLABORATION_PROGRESS without {key}: {update}")
    completed = frames[-1]["data"]
    if frames[-1]["type"] != "COLLABORATION_COMPLETED":
        fail(f"no COLLABORATION_COMPLETED; got {types[-5:]}")
    for key in ("result", "participantContributions", "quality", "duration"):
        if key not in completed:
            fail(f"COLLABORATION_COMPLETED without {key}: {completed}")

    # --- SSE message stream (SSE流设计: id / event / data) ---
    sse = streams["messages"]["events"]
    sse_chunks = [event for event in sse if event["event"] == "message_chunk"]
    complete = [event for event in sse if event["event"] == "message_complete"]
    if not sse_chunks or len(complete) != 1:
        fail(f"SSE events were {[event['event'] for event in sse]}")
    offset = 0
    for event in sse_chunks:
        data = json.loads(event["data"])
        if data["position"] != offset or data["total"] != -1:
            fail(f"message_chunk {data}: expected position {offset} and total -1")
        if not event["id"]:
            fail("a message_chunk without id")
        offset += js_length(data["chunk"])
    complete_data = json.loads(complete[0]["data"])
    text = "".join(json.loads(event["data"])["chunk"] for event in sse_chunks)
    if complete_data["message"] != text or not isinstance(complete_data["metadata"], dict):
        fail(f"message_complete is not {{message, metadata}} of the chunks: {complete_data}")
    roles = streams["roles"]["events"]
    role_names = [event["event"] for event in roles]
    if any(name != name.lower() for name in role_names) or "role_status_change" not in role_names:
        fail(f"role activity event names: {sorted(set(role_names))}")

    print(json.dumps({
        "ws_types": sorted(set(types)),
        "ws_positions": [chunk["position"] for chunk in chunks],
        "estimated_length": start.get("estimatedLength"),
        "initiated": initiated,
        "progress_last": progress[-1] if progress else None,
        "completed_keys": sorted(completed.keys()),
        "sse_events": sorted(set(event["event"] for event in sse)),
        "sse_positions": [json.loads(event["data"])["position"] for event in sse_chunks],
        "sse_message": complete_data["message"],
        "role_events": sorted(set(role_names)),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
