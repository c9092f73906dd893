"""The example agent loop against the toolkit's own OpenAI-compatible server (tiny synthetic weights)."""

from __future__ import annotations

import io
import json
import sys

from conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES))
import agent_loop  # noqa: E402


def test_agent_loop_keeps_its_conversation_in_optical_memory_under_a_budget(server):
    out = io.StringIO()
    budget = 150
    agent = agent_loop.run(server, "deepseek-ocr", budget=budget, turns=6, max_tokens=8, single_image=True,
                           recall=True, out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    turns, recall = lines[:-1], lines[-1]
    assert len(turns) == 6 and len(agent.memory) == 12  # a user and an assistant round per turn
    assert all(t["context_tokens"] <= budget for t in turns)
    assert all(t["request_images"] == 1 for t in turns)
    # The conversation outgrows the budget: older rounds become images, later ones are dropped.
    assert turns[-1]["all_text_tokens"] > budget
    assert turns[-1]["pages"] >= 1 and turns[-1]["schedule"] != "text"
    assert all(isinstance(t["answer"], str) and t["answer"] for t in turns)
    # The answers came from the server and went back into memory as assistant rounds.
    assert agent.memory.rounds[1][1] == "assistant" and agent.memory.rounds[1][2] == agent.turns[0].answer
    # recall() read the oldest imaged round through compress_bench.OpenAIEngine and the same server.
    assert recall["read"] and recall["truth"]


def test_agent_messages_keep_every_segment_in_order():
    import compress_bench as cb

    class NoClient:
        pass

    agent = agent_loop.Agent(client=NoClient(), model="m", budget=10_000,
                             memory=cb.OpticalMemory(schedule="ladder:levels=text@0/tiny@1"))
    for i, q in enumerate(agent_loop.SCRIPT[:3]):
        agent.memory.push(f"u{i}", "user", q)
    msgs, images = agent.messages(agent.memory.context())
    assert msgs[0]["role"] == "system"
    assert images == 2 and msgs[-1] == {"role": "user", "content": agent_loop.SCRIPT[2]}
    assert [m["content"][1]["image_url"]["url"][:22] for m in msgs[1:3]] == ["data:image/png;base64,"] * 2


class _RecordingEndpoint:
    """A minimal OpenAI-compatible chat endpoint (a general VLM's shape): records each request and
    answers with a fixed text."""

    def __init__(self):
        import http.server
        import threading

        self.requests: list = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                answer = "Noted: TAP 1234, gate B12, Casa do Rio QX-5521, May 5 at 14:00. " * 12
                reply = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()


def test_agent_loop_sends_the_context_as_images_to_a_vision_endpoint():
    endpoint = _RecordingEndpoint()
    try:
        budget = 1500
        agent = agent_loop.run(endpoint.url, "some-vlm", budget=budget, turns=8, max_tokens=64, out=io.StringIO())
    finally:
        endpoint.close()
    assert len(endpoint.requests) == 8
    assert all(path == "/v1/chat/completions" for path, _ in endpoint.requests)
    for (_, body), turn in zip(endpoint.requests, agent.turns):
        msgs = body["messages"]
        assert body["model"] == "some-vlm" and body["max_tokens"] == 64
        assert msgs[0]["role"] == "system" and msgs[-1] == {"role": "user", "content": turn.question}
        images = [p for m in msgs if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"]
        assert len(images) == turn.images == turn.request_images
        assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in images)
        assert turn.context_tokens <= budget
    # Later turns carry older rounds as images, and the context costs less than the text would.
    last = agent.turns[-1]
    assert last.images >= 1 and last.context_tokens < last.text_tokens_if_all_text
