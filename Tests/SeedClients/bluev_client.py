"""A BlueV client (seed 003) written from the seed document alone, against a running Switchboard.

Its only deviation from the seed is the one every door keeps: the token, here as `?token=` on the
socket URL and `Authorization: Bearer` on REST. Prints `ok <check>` per check; fails loudly.
Environment: SB_HTTP (http://host:port of a gateway), SB_TOKEN (a user's), SB_ADMIN_TOKEN (an admin's).
"""
import asyncio
import json
import os
import urllib.error
import urllib.request
import uuid

import websockets

HTTP = os.environ["SB_HTTP"]
TOKEN = os.environ["SB_TOKEN"]
ADMIN = os.environ["SB_ADMIN_TOKEN"]
WS = HTTP.replace("http://", "ws://")


def ok(check):
    print("ok", check, flush=True)


def rest(method, path, token=None, body=None, headers=None):
    """(status, headers, parsed JSON or text) of one REST call."""
    request = urllib.request.Request(HTTP + path, method=method, data=None if body is None else json.dumps(body).encode())
    if token:
        request.add_header("Authorization", "Bearer " + token)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    try:
        return status, answer_headers, json.loads(raw)
    except ValueError:
        return status, answer_headers, raw.decode()


class Socket:
    """One `/ws/{session_id}` connection; every frame received is kept in order."""

    def __init__(self, session_id):
        self.session_id = session_id
        self.frames = []
        self.arrived = asyncio.Event()

    async def __aenter__(self):
        self.ws = await websockets.connect(f"{WS}/ws/{self.session_id}?token={TOKEN}")
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc):
        self.reader.cancel()
        await self.ws.close()

    async def _read(self):
        async for text in self.ws:
            frame = json.loads(text)
            if frame.get("type") == "heartbeat":
                await self.ws.send(json.dumps({"type": "heartbeat_response"}))
            self.frames.append(frame)
            self.arrived.set()

    async def send(self, message):
        await self.ws.send(json.dumps(message))

    async def until(self, match, after=0, timeout=30.0):
        """The first frame from index `after` on that matches, and its index."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index in range(after, len(self.frames)):
                if match(self.frames[index]):
                    return index, self.frames[index]
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"no matching frame within {timeout}s; received: {self.frames[after:]}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass


def of_type(kind, **fields):
    return lambda frame: frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items())


def workflow(workflow_id, delays):
    """start → one delay node per entry (ms) → end: the node types Switchboard documents."""
    nodes = [{"id": "start", "type": "start", "config": {"inputs": {"value": "x"}}}]
    connections, previous = [], "start"
    for index, ms in enumerate(delays, 1):
        nodes.append({"id": f"d{index}", "type": "delay", "config": {"ms": ms}})
        connections.append({"from_node": previous, "from_output": "value", "to_node": f"d{index}", "to_input": "value"})
        previous = f"d{index}"
    nodes.append({"id": "end", "type": "end"})
    connections.append({"from_node": previous, "from_output": "value", "to_node": "end", "to_input": "result"})
    body = {"nodes": nodes, "connections": connections}
    if workflow_id is not None:
        body["id"] = workflow_id
    return body


async def main():
    session_id = "bluev-" + uuid.uuid4().hex[:8]
    async with Socket(session_id) as socket:
        _, hello = await socket.until(of_type("connection_established"))
        assert hello["session_id"] == session_id and "timestamp" in hello, hello
        ok("connection_established names the session")

        # Subscriptions: the seed's names, and one it does not know, which is kept.
        await socket.send({"type": "subscribe", "event_types": ["node_status", "workflow_status", "my_own_events"]})
        _, confirmed = await socket.until(of_type("subscription_confirmed"))
        assert set(confirmed["subscriptions"]) == {"node_status", "workflow_status", "my_own_events"}, confirmed
        ok("subscribe answers subscription_confirmed with every name kept")
        await socket.send({"type": "unsubscribe", "event_types": ["workflow_status"]})
        _, updated = await socket.until(of_type("subscription_updated"))
        assert set(updated["subscriptions"]) == {"node_status", "my_own_events"}, updated
        ok("unsubscribe answers subscription_updated")

        # Unknown types: the seed's error frame.
        await socket.send({"type": "teleport"})
        _, error = await socket.until(of_type("error"))
        assert error["message"] == "Unknown message type: teleport", error
        ok("an unknown type is answered {type: error, message}")

        # A run under the client's id: every frame of it names that id.
        mark = len(socket.frames)
        await socket.send({"type": "execute_workflow", "workflow": workflow("workflow_123", [1500, 1500])})
        _, started = await socket.until(of_type("workflow_execution_started"), after=mark)
        assert started["workflow_id"] == "workflow_123", started
        ok("workflow_execution_started carries the client's workflow id")

        # The same id again while that run is live: refused before anything starts.
        await socket.send({"type": "execute_workflow", "workflow": workflow("workflow_123", [10])})
        _, refused = await socket.until(of_type("workflow_execution_error"), after=mark)
        assert isinstance(refused["error"], str) and refused["error"], refused
        ok("a second live run with the same id is refused with workflow_execution_error")

        # Pause by the client's id: acknowledged at once, then what happened.
        await socket.until(of_type("node_status_update", node_id="d1", status="running"), after=mark)
        mark = len(socket.frames)
        await socket.send({"type": "control_workflow", "workflow_id": "workflow_123", "action": "pause"})
        index, ack = await socket.until(of_type("workflow_control_response"), after=mark)
        assert (ack["workflow_id"], ack["action"], ack["status"]) == ("workflow_123", "pause", "acknowledged"), ack
        _, paused = await socket.until(of_type("workflow_control_result", action="pause"), after=index)
        assert paused["workflow_id"] == "workflow_123" and paused["success"] is True and paused["status"] == "paused", paused
        ok("pause: workflow_control_response acknowledged, then its outcome")

        # While paused, the run is one of the caller's active workflows.
        status, headers, stats = rest("GET", "/api/connections", token=TOKEN)
        assert status == 200, (status, stats)
        assert {"total_connections", "active_workflows", "connections"} <= set(stats), stats
        mine = [c for c in stats["connections"] if c["session_id"] == session_id]
        assert len(mine) == 1 and stats["active_workflows"] >= 1, stats
        line = mine[0]
        assert {"session_id", "connected_at", "last_heartbeat", "subscriptions", "client_info"} <= set(line), line
        assert set(line["subscriptions"]) == {"node_status", "my_own_events"}, line
        assert "gateway" not in line and "gateways" not in stats, stats
        ok("GET /api/connections: the caller's socket, its subscriptions, its active workflow")

        mark = len(socket.frames)
        await socket.send({"type": "control_workflow", "workflow_id": "workflow_123", "action": "resume"})
        index, ack = await socket.until(of_type("workflow_control_response"), after=mark)
        assert (ack["workflow_id"], ack["action"], ack["status"]) == ("workflow_123", "resume", "acknowledged"), ack
        _, resumed = await socket.until(of_type("workflow_control_result", action="resume"), after=index)
        assert resumed["success"] is True and resumed["status"] == "running", resumed
        ok("resume: acknowledged, then running again")

        # The run's end reaches the client although it unsubscribed from workflow_status.
        _, completed = await socket.until(of_type("workflow_completed"), after=mark)
        assert completed["workflow_id"] == "workflow_123" and "results" in completed and "summary" in completed, completed
        assert "timestamp" in completed, completed
        updates = [f for f in socket.frames if f.get("type") == "node_status_update"]
        assert updates and all(f["workflow_id"] == "workflow_123" for f in updates), updates
        assert {f["status"] for f in updates} >= {"running", "completed"}, updates
        ok("workflow_completed {results, summary, timestamp}; node updates name the client's id")

        # Once it ended, the id is free again; this run is stopped.
        mark = len(socket.frames)
        await socket.send({"type": "execute_workflow", "workflow": workflow("workflow_123", [60000])})
        _, started = await socket.until(of_type("workflow_execution_started"), after=mark)
        assert started["workflow_id"] == "workflow_123", started
        await socket.until(of_type("node_status_update", node_id="d1", status="running"), after=mark)
        mark = len(socket.frames)
        await socket.send({"type": "control_workflow", "workflow_id": "workflow_123", "action": "stop"})
        index, ack = await socket.until(of_type("workflow_control_response"), after=mark)
        assert (ack["workflow_id"], ack["action"], ack["status"]) == ("workflow_123", "stop", "acknowledged"), ack
        _, stopped = await socket.until(of_type("workflow_control_result", action="stop"), after=index)
        assert stopped["success"] is True and stopped["status"] == "stopped", stopped
        _, end = await socket.until(of_type("workflow_stopped", workflow_id="workflow_123"), after=mark)
        ok("stop: acknowledged, then the run's own end")

        # Without an id, one is made for the run and used throughout.
        mark = len(socket.frames)
        await socket.send({"type": "execute_workflow", "workflow": workflow(None, [10])})
        _, started = await socket.until(of_type("workflow_execution_started"), after=mark)
        generated = started["workflow_id"]
        assert isinstance(generated, str) and generated, started
        await socket.until(of_type("workflow_completed", workflow_id=generated), after=mark)
        ok("a workflow without an id gets one, named in its frames")

        # Broadcast: any JSON body, delivered as it is.
        posted = {"kind": "maintenance", "detail": {"minutes": 5, "tags": ["db", "cache"]}, "n": 1}
        status, headers, answer = rest("POST", "/api/broadcast", token=ADMIN, body=posted)
        assert status == 200 and answer == {"status": "broadcasted"}, (status, answer)
        await socket.until(lambda frame: frame == posted)
        ok("POST /api/broadcast answers broadcasted; the socket receives the JSON as it is")

        # An admin sees every socket; the token may be a query parameter too.
        status, _, stats = rest("GET", f"/api/connections?token={ADMIN}")
        assert status == 200 and any(c["session_id"] == session_id for c in stats["connections"]), stats
        assert stats["total_connections"] == len(stats["connections"]), stats
        ok("GET /api/connections with ?token= for an admin lists everyone's sockets")

        # The seed's heartbeat every 30 s; answering it moves last_heartbeat on.
        _, beat = await socket.until(of_type("heartbeat"), timeout=40.0)
        assert isinstance(beat["timestamp"], str) and beat["timestamp"], beat
        await asyncio.sleep(1.0)
        _, _, stats = rest("GET", "/api/connections", token=TOKEN)
        line = next(c for c in stats["connections"] if c["session_id"] == session_id)
        assert line["last_heartbeat"] > line["connected_at"], line
        ok("heartbeat {timestamp} within 30 s; the answer shows in last_heartbeat")

    # CORS as the seed's CORSMiddleware(allow_origins=*, allow_credentials, allow_methods=*, allow_headers=*).
    origin = "http://editor.example"
    status, headers, _ = rest(
        "OPTIONS", "/api/connections",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert status == 200, status
    assert headers["Access-Control-Allow-Origin"] == origin and headers["Access-Control-Allow-Credentials"] == "true", dict(headers)
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower(), dict(headers)
    assert "POST" in headers["Access-Control-Allow-Methods"], dict(headers)
    status, headers, _ = rest("GET", "/api/connections", token=TOKEN, headers={"Origin": origin})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*", dict(headers)
    ok("CORS: the preflight and the answer allow the browser origin")


asyncio.run(main())
