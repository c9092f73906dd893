"""An agent loop whose conversation lives in optical memory (docs/PYTHON.md, docs/MEMORY.md).

Every turn is pushed into a `compress_bench.OpticalMemory`; before each call the memory assembles the
context under a token budget (recent rounds as text, older ones as ever smaller page images), and the
context goes to any OpenAI-compatible vision endpoint through the official `openai` package: text
rounds as text messages, imaged rounds as `image_url` parts (PNG data URLs). The answer is pushed back
as the assistant's round. Optionally an old round is read back through `compress_bench.OpenAIEngine`
(`memory.recall`), to see what the images still hold.

    python crates/py/examples/agent_loop.py --base-url https://api.openai.com/v1 --model gpt-4.1-mini \
        --budget 4000 --turns 6
    # against the toolkit's own server (an OCR reader: every image a page, read with the conversation's text):
    compress-bench serve --synthetic-weights tiny --mode tiny --port 8000 &
    python crates/py/examples/agent_loop.py --base-url http://127.0.0.1:8000/v1 --model deepseek-ocr \
        --single-image --max-tokens 32 --recall

`--single-image` is for OCR readers such as `compress-bench serve`, which read each image of a request as
a page of its own (the whole conversation's text as every page's prompt) and answer with the pages'
texts joined: with one image the answer is one reading. The newest page of the context goes into the last
user message beside the question (the question itself is rendered as a page when the context has no image
yet); the rest of the context is sent as earlier messages all the same.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from dataclasses import dataclass, field

import compress_bench as cb

# A scripted user, so the loop runs without a person; replace with input() for a chat.
SCRIPT = [
    "I am planning a trip to Lisbon from May 3 to May 9 with two colleagues. Keep track of the details.",
    "Our flight is TAP 1234, leaving at 09:40 from gate B12; the hotel is Casa do Rio, booking ref QX-5521.",
    "We have a client meeting on May 5 at 14:00 at Avenida da Liberdade 110, third floor.",
    "Maria is vegetarian and Tom is allergic to peanuts; book dinner for three on May 6 near Chiado.",
    "Add a day trip to Sintra on May 7; we want to be back by 19:00.",
    "Summarise the whole plan, with the flight, the hotel reference and the meeting address.",
    "What was the booking reference of the hotel, and at which gate does the flight leave?",
    "Draft a short message to the client confirming the meeting time and place.",
]


def data_url(page: cb.Page) -> str:
    return "data:image/png;base64," + base64.b64encode(page.png).decode()


def image_part(page: cb.Page) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(page)}}


@dataclass
class Turn:
    question: str
    answer: str
    schedule: str
    context_tokens: int
    text_tokens_if_all_text: int
    images: int
    request_images: int


@dataclass
class Agent:
    """The loop's state: the client, the memory and what each turn cost."""

    client: object
    model: str
    budget: int
    max_tokens: int = 256
    single_image: bool = False
    system: str = (
        "You are a travel assistant. Earlier turns of this conversation are given as page images of "
        "their text; read them as the conversation so far."
    )
    memory: cb.OpticalMemory = field(default=None)  # type: ignore[assignment]
    turns: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.memory is None:
            # The most faithful schedule whose context fits the budget is chosen at every context.
            # recall() asks the reader for at most max_tokens per page.
            self.memory = cb.OpticalMemory(schedule=f"budget:tokens={self.budget}", max_new_tokens=self.max_tokens)

    def messages(self, context: cb.Context) -> tuple[list, int]:
        """The chat messages of a context: the newest round (the question) last."""
        msgs: list = [{"role": "system", "content": self.system}]
        segments = context.segments
        *older, newest = segments
        assert newest.kind == "text", "the newest round is always text"
        last_page = None
        for seg in older:
            role = "assistant" if seg.role == "assistant" else "user"
            if seg.kind == "text":
                msgs.append({"role": role, "content": seg.text})
                continue
            for k, page in enumerate(seg.pages):
                caption = f"[earlier {seg.role} turn {seg.round_id}, page {k + 1}/{len(seg.pages)}, as an image]"
                # Images go in user messages (assistant messages carry text only in the API).
                msgs.append({"role": "user", "content": [{"type": "text", "text": caption}, image_part(page)]})
                last_page = (len(msgs) - 1, page)
        images = sum(1 for m in msgs if isinstance(m["content"], list))
        if not self.single_image:
            msgs.append({"role": "user", "content": newest.text})
            return msgs, images
        # One image in the last user message: the newest page moves there (or the question, rendered).
        if last_page is not None:
            index, page = last_page
            msgs[index] = {"role": "user", "content": "[the newest page image is in the last message]"}
            images -= 1
        else:
            page = cb.render(newest.text, mode="tiny", ratio=5)
        msgs.append({"role": "user", "content": [image_part(page), {"type": "text", "text": newest.text}]})
        return msgs, images + 1

    def step(self, question: str) -> Turn:
        n = len(self.memory)
        self.memory.push(f"u{n}", "user", question)
        context = self.memory.context()
        assert context.tokens <= self.budget, (context.tokens, self.budget)
        msgs, images = self.messages(context)
        reply = self.client.chat.completions.create(model=self.model, messages=msgs, max_tokens=self.max_tokens)
        answer = reply.choices[0].message.content or ""
        self.memory.push(f"a{n + 1}", "assistant", answer)
        turn = Turn(
            question=question,
            answer=answer,
            schedule=context.schedule,
            context_tokens=context.tokens,
            text_tokens_if_all_text=context.all_text_tokens,
            images=context.pages,
            request_images=images,
        )
        self.turns.append(turn)
        return turn

    def recall_oldest_image(self, engine: cb.Engine) -> cb.Recall | None:
        """Reads the oldest imaged round back through `engine` (what the images still hold)."""
        for seg in self.memory.context().segments:
            if seg.kind == "pages":
                return self.memory.recall(seg.round_id, engine)
        return None


def run(base_url: str, model: str, budget: int, turns: int, api_key: str | None = None, max_tokens: int = 256,
        single_image: bool = False, recall: bool = False, out=sys.stdout) -> Agent:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused")
    agent = Agent(client=client, model=model, budget=budget, max_tokens=max_tokens, single_image=single_image)
    for question in (SCRIPT * (turns // len(SCRIPT) + 1))[:turns]:
        t = agent.step(question)
        print(json.dumps({
            "turn": len(agent.turns), "schedule": t.schedule, "context_tokens": t.context_tokens,
            "all_text_tokens": t.text_tokens_if_all_text, "pages": t.images, "request_images": t.request_images,
            "answer": t.answer[:80],
        }), file=out)
    if recall:
        engine = cb.OpenAIEngine(base_url, model, api_key=api_key)
        r = agent.recall_oldest_image(engine)
        if r is not None:
            print(json.dumps({"recall": r.id, "as": r.representation, "read": r.text[:80],
                              "truth": r.ground_truth[:80]}), file=out)
    return agent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="the API up to and including /v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--api-key", default=None, help="default: $OPENAI_API_KEY")
    ap.add_argument("--budget", type=int, default=4000, help="context tokens per request (text + vision slots)")
    ap.add_argument("--turns", type=int, default=len(SCRIPT))
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--single-image", action="store_true", help="one image, in the last user message")
    ap.add_argument("--recall", action="store_true", help="read the oldest imaged round back at the end")
    a = ap.parse_args(argv)
    run(a.base_url, a.model, a.budget, a.turns, a.api_key, a.max_tokens, a.single_image, a.recall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
