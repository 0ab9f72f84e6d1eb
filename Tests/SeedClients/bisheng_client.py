"""A Bisheng chat client (seed 002) written from the seed document alone, against a running Switchboard.

REST answers are read in Bisheng's envelope {status_code, status_message, data}; the chat socket is
ws://host/chat/{flow_id}?chat_id=… with `Authorization: Bearer`, frames {type, data, trace_id}.
Prints `ok <check>` per check; fails loudly. Environment: SB_HTTP (http://host:port), SB_TOKEN.
"""
import asyncio
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import websockets

HTTP = os.environ["SB_HTTP"]
TOKEN = os.environ["SB_TOKEN"]
WS = HTTP.replace("http://", "ws://")


def ok(check):
    print("ok", check, flush=True)


def rest(method, path, body=None, token=TOKEN):
    """(HTTP status, the parsed envelope) of one REST call."""
    request = urllib.request.Request(HTTP + path, method=method, data=None if body is None else json.dumps(body).encode())
    if token:
        request.add_header("Authorization", "Bearer " + token)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def data_of(method, path, body=None):
    """The `data` of a successful call, after checking the envelope."""
    status, envelope = rest(method, path, body)
    assert status == 200, (method, path, status, envelope)
    assert set(envelope) >= {"status_code", "status_message", "data"}, envelope
    assert envelope["status_code"] == 200, envelope
    return envelope["data"]


class Chat:
    """One chat socket; every frame received is kept in order."""

    def __init__(self, flow_id, chat_id):
        self.url = f"{WS}/chat/{flow_id}?chat_id={chat_id}"
        self.frames = []
        self.arrived = asyncio.Event()

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, additional_headers={"Authorization": "Bearer " + TOKEN})
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc):
        self.reader.cancel()
        await self.ws.close()

    async def _read(self):
        async for text in self.ws:
            self.frames.append(json.loads(text))
            self.arrived.set()

    async def send(self, kind, data, trace_id):
        await self.ws.send(json.dumps({"type": kind, "data": data, "trace_id": trace_id}))

    async def until(self, match, timeout=30.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for frame in self.frames:
                if match(frame):
                    return frame
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"no matching frame within {timeout}s; received: {self.frames}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass


async def main():
    flow_id = "flow-" + uuid.uuid4().hex[:6]
    chat_id = "chat-" + uuid.uuid4().hex[:8]

    # Sessions over REST, every answer in the envelope.
    created = data_of("POST", "/chat/session/create", {"chat_id": chat_id, "flow_id": flow_id, "chat_type": "NORMAL", "topic": "seed"})
    assert created["chat_id"] == chat_id and created["flow_id"] == flow_id and created["chat_type"] == "NORMAL", created
    ok("POST /chat/session/create answers status_code 200 with the session")
    listed = data_of("GET", "/chat/session/list")
    assert any(item["chat_id"] == chat_id for item in listed["list"]), listed
    ok("GET /chat/session/list")
    updated = data_of("PUT", f"/chat/session/{chat_id}", {"topic": "renamed"})
    assert updated["topic"] == "renamed", updated
    assert data_of("GET", f"/chat/session/{chat_id}")["topic"] == "renamed"
    ok("PUT and GET /chat/session/{id}")
    status, envelope = rest("GET", "/chat/session/no-such-" + chat_id)
    assert status == 404 and envelope["status_code"] == 404 and envelope["data"] is None, envelope
    status, envelope = rest("GET", "/chat/session/list", token=None)
    assert status == 401 and envelope["status_code"] == 401 and isinstance(envelope["status_message"], str), envelope
    ok("errors are in the envelope too (404, 401)")

    # A message, its answer; then the socket goes away while the next one is answered.
    async with Chat(flow_id, chat_id) as chat:
        await chat.until(lambda f: f["type"] == "start")
        await chat.send("message", {"content": "hello from the seed"}, "t1")
        result = await chat.until(lambda f: f["type"] == "result" and f["trace_id"] is not None)
        assert result["data"]["content"], result
        await chat.until(lambda f: f["type"] == "end")
        ok("message → result → end over the chat socket")

        await chat.send("message", {"content": "answer this while I am away"}, "t2")
        await chat.until(lambda f: f["type"] == "progress" and f["trace_id"] == "t2")
    # Away until the answer is stored: nothing of it was seen on the socket.
    deadline = time.time() + 60
    while True:
        history = data_of("GET", f"/chat/message/history?chat_id={chat_id}&page_size=50")["list"]
        bots = [m for m in history if m["is_bot"]]
        if len(bots) >= 2:
            break
        assert time.time() < deadline, history
        await asyncio.sleep(0.5)
    missed = max(bots, key=lambda m: m["create_time"])
    assert all(m["extra"] is None or isinstance(m["extra"], str) for m in history), history
    json.loads(history[0]["extra"] or "{}")
    ok("message history in the envelope; extra is the seed's Optional[str] (JSON text)")

    await asyncio.sleep(1.0)
    async with Chat(flow_id, chat_id) as chat:
        await chat.until(lambda f: f["type"] == "start")
        await chat.until(lambda f: f["type"] == "result" and f["data"].get("content") == missed["message"])
        await chat.until(lambda f: f["type"] == "end")
        first_answer = [f for f in chat.frames if f["type"] == "result" and f["data"].get("message_id") == result["data"]["message_id"]]
        assert not first_answer, chat.frames
        ok("reconnecting replays what was missed (and only that): result and end of the answer given while away")

    interrupted = data_of("POST", "/chat/interrupt", {"flow_id": flow_id, "chat_id": chat_id})
    assert interrupted["chat_id"] == chat_id and interrupted["status"] == "stopping", interrupted
    ok("POST /chat/interrupt {flow_id, chat_id} in the envelope")
    statistics = data_of("GET", "/chat/statistics")
    assert statistics["session_count"] >= 1 and statistics["message_count"] >= 4, statistics
    count = data_of("GET", f"/chat/messages/count?chat_id={chat_id}")
    assert count["count"] >= 4, count
    ok("GET /chat/statistics and /chat/messages/count")
    data_of("DELETE", f"/chat/session/{chat_id}")
    ok("DELETE /chat/session/{id}")


asyncio.run(main())
