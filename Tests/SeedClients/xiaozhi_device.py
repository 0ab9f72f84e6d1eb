"""A xiaozhi ESP32 device (seed 004), written from the xiaozhi WebSocket protocol alone, against a running Switchboard.

What the firmware does: OTA (`POST /xiaozhi/ota/` with Device-Id and Client-Id), show the activation code
and poll `/xiaozhi/ota/activate` until a user bound it, OTA again for `websocket.url` and `websocket.token`,
then the WebSocket with `Authorization`, `Protocol-Version`, `Device-Id`, `Client-Id` headers, `hello`
with `features.mcp`, and an MCP server (JSON-RPC 2.0 in `{"type":"mcp","payload":…}`) offering two tools
over two `tools/list` pages, which it later changes (`notifications/tools/list_changed`). The user's side
(entering the code) is the one REST call the console makes. Prints `ok <check>` per check; fails loudly.
Environment: SB_HTTP (http://host:port), SB_USER_TOKEN, SB_MODEL: `offline` (default; the answer names the
tool it called) or `openai` (a model decides; the answer says what the device answered).
"""
import asyncio
import json
import os
import random
import urllib.error
import urllib.request
import uuid

import websockets

HTTP = os.environ["SB_HTTP"]
USER_TOKEN = os.environ["SB_USER_TOKEN"]
MODEL = os.environ.get("SB_MODEL", "offline")
DEVICE_ID = ":".join("%02x" % random.randrange(256) for _ in range(6))
CLIENT_ID = str(uuid.uuid4())

# The device's tools, as the firmware's McpServer lists them (name, description, inputSchema).
LIGHT = {"name": "self.light.turn_on", "description": "Turn on the light",
         "inputSchema": {"type": "object", "properties": {}}}
VOLUME = {"name": "self.audio_speaker.set_volume", "description": "Set the volume of the audio speaker (0-100)",
          "inputSchema": {"type": "object", "properties": {"volume": {"type": "integer", "minimum": 0, "maximum": 100}},
                          "required": ["volume"]}}
# The tool that replaces the light when the device's tools change.
FAN = {"name": "self.fan.turn_on", "description": "Turn on the fan", "inputSchema": {"type": "object", "properties": {}}}


def ok(check):
    print("ok", check, flush=True)


def post(path, body, headers):
    request = urllib.request.Request(HTTP + path, method="POST", data=json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    for key, value in headers.items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text) if text else {}


def ota():
    headers = {"Device-Id": DEVICE_ID, "Client-Id": CLIENT_ID, "Activation-Version": "2", "User-Agent": "seed-board/1.6.0",
               "Accept-Language": "en-US"}
    status, body = post("/xiaozhi/ota/", {"application": {"version": "1.6.0"}, "mac_address": DEVICE_ID}, headers)
    assert status == 200, (status, body)
    return body


def activate_and_connect_details():
    first = ota()
    activation = first.get("activation")
    assert activation and activation.get("code"), first
    # The user types the code the device shows into the console.
    status, body = post("/api/v1/devices/bind", {"code": activation["code"]}, {"Authorization": "Bearer " + USER_TOKEN})
    assert status == 201, (status, body)
    status, _ = post("/xiaozhi/ota/activate", {"Payload": {"algorithm": "hmac-sha256", "serial_number": DEVICE_ID,
                                                           "challenge": activation.get("challenge", ""), "hmac": ""}},
                     {"Device-Id": DEVICE_ID, "Client-Id": CLIENT_ID})
    assert status == 200, status
    second = ota()
    websocket = second["websocket"]
    assert websocket.get("token"), second
    ok("OTA, activation code, bind, OTA again: websocket url and token")
    return websocket["url"], websocket["token"]


class Device:
    def __init__(self, ws):
        self.ws = ws
        self.session_id = None
        self.audio_frames = 0

    async def send(self, message):
        if self.session_id and "session_id" not in message:
            message = {"session_id": self.session_id, **message}
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout=30.0):
        """The next JSON message (binary Opus frames are counted, as the device plays them)."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            if isinstance(frame, bytes):
                self.audio_frames += 1
                continue
            return json.loads(frame)

    async def mcp_request(self, method):
        """The server's next MCP request, skipping its notifications."""
        while True:
            message = await self.receive()
            if message["type"] != "mcp":
                raise AssertionError("expected an mcp %s, got %s" % (method, message))
            payload = message["payload"]
            assert payload.get("jsonrpc") == "2.0", payload
            if "id" not in payload:
                continue  # notifications/initialized
            assert payload["method"] == method, payload
            assert isinstance(payload["id"], int), payload  # the firmware takes numeric ids only
            return payload

    async def mcp_reply(self, request_id, result=None, error=None):
        payload = {"jsonrpc": "2.0", "id": request_id}
        if error is not None:
            payload["error"] = error
        else:
            payload["result"] = result
        await self.send({"type": "mcp", "payload": payload})

    async def answer_tools_list(self, pages):
        """Answers the server's tools/list requests, one page of tools each, following nextCursor."""
        previous = None
        for number, tools in enumerate(pages):
            request = await self.mcp_request("tools/list")
            assert request["params"].get("cursor", "") == ("" if number == 0 else "page-%d" % (number + 1)), request
            assert previous is None or request["id"] != previous, (previous, request)
            previous = request["id"]
            result = {"tools": tools}
            if number + 1 < len(pages):
                result["nextCursor"] = "page-%d" % (number + 2)
            await self.mcp_reply(request["id"], result)

    async def turn(self, text, tool_result):
        """Sends typed text (listen detect); answers the tools/call that comes; returns (call, spoken sentences)."""
        await self.send({"type": "listen", "state": "detect", "text": text})
        call = None
        sentences = []
        types = []
        while True:
            message = await self.receive(timeout=40.0)
            types.append(message["type"] + ("/" + message["state"] if "state" in message else ""))
            if message["type"] == "mcp":
                call = message["payload"]
                assert call["method"] == "tools/call", call
                await self.mcp_reply(call["id"], tool_result(call["params"]))
            elif message["type"] == "tts" and message["state"] == "sentence_start":
                sentences.append(message["text"])
            elif message["type"] == "tts" and message["state"] == "stop":
                return call, " ".join(sentences), types
            elif message["type"] == "alert":
                raise AssertionError("alert: %s" % message)


async def main():
    url, token = activate_and_connect_details()
    headers = {"Authorization": "Bearer " + token, "Protocol-Version": "1", "Device-Id": DEVICE_ID, "Client-Id": CLIENT_ID}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        device = Device(ws)
        await device.send({"type": "hello", "version": 1, "features": {"mcp": True}, "transport": "websocket",
                           "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60}})
        hello = await device.receive(timeout=10)
        assert hello["type"] == "hello" and hello["transport"] == "websocket" and hello.get("session_id"), hello
        device.session_id = hello["session_id"]
        ok("hello answered with a session id")

        initialize = await device.mcp_request("initialize")
        assert initialize["params"]["protocolVersion"], initialize
        await device.mcp_reply(initialize["id"], {"protocolVersion": "2024-11-05", "capabilities": {"tools": {}},
                                                  "serverInfo": {"name": "seed-board", "version": "1.6.0"}})
        ok("initialize after hello (numeric id, protocolVersion)")

        await device.answer_tools_list([[LIGHT], [VOLUME]])
        ok("tools/list follows nextCursor")

        call, spoken, types = await device.turn(
            "please turn on the light", lambda params: {"content": [{"type": "text", "text": "the light is on"}], "isError": False})
        assert call and call["params"]["name"] == "self.light.turn_on", call
        assert call["params"].get("arguments", {}) == {}, call
        assert "the light is on" in spoken, spoken
        assert MODEL != "offline" or "self.light.turn_on" in spoken, spoken
        assert types.index("stt") < types.index("tts/start"), types
        assert types.index("mcp") < types.index("tts/start"), types
        assert "llm" in types, types
        ok("a turn naming a tool calls it over MCP and speaks its result")

        call, spoken, _ = await device.turn(
            "set the volume to 30", lambda params: {"content": [{"type": "text", "text": "volume is now %d" % params["arguments"]["volume"]}],
                                                    "isError": False})
        assert call and call["params"] == {"name": "self.audio_speaker.set_volume", "arguments": {"volume": 30}}, call
        assert "volume is now 30" in spoken, spoken
        ok("a tool of the second page is called with its arguments")

        call, spoken, _ = await device.turn("what a lovely day", lambda params: None)
        assert call is None, call
        assert spoken, spoken
        assert MODEL != "openai" or "Nothing for the device to do" in spoken, spoken
        ok("a turn naming no tool is answered without a call")

        # The device's tools change: the light goes, a fan comes; the server lists every page again.
        await device.send({"type": "mcp", "payload": {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}})
        await device.answer_tools_list([[FAN], [VOLUME]])
        ok("tools/list_changed is answered by tools/list from the first page")
        call, spoken, _ = await device.turn(
            "please turn on the fan", lambda params: {"content": [{"type": "text", "text": "the fan is spinning"}], "isError": False})
        assert call and call["params"]["name"] == "self.fan.turn_on", call
        assert "the fan is spinning" in spoken, spoken
        ok("the changed tools are the ones called")
        assert device.audio_frames > 0
        ok("audio arrived (%d Opus frames)" % device.audio_frames)


asyncio.run(main())
