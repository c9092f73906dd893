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
