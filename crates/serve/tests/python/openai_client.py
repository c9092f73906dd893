"""The official `openai` package as a client of `compress-bench serve` (run by tests/it/python.rs).

Usage: openai_client.py BASE_URL MODEL PAGE.png MAX_TOKENS
Prints one JSON line: the text of a plain completion, the text gathered from a streamed one, the
number of text pieces it came in, and both usages; exits non-zero on the first failed check. Last, a
long stream is closed after its first piece of text (the server cancels it mid-decode and frees its
slot) and a completion is read after it.
"""

import base64
import json
import sys

import openai
from openai import OpenAI

base_url, model, page, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = OpenAI(base_url=base_url, api_key="not-checked", max_retries=0, timeout=120)
with open(page, "rb") as f:
    url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
messages = [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": url}},
    {"type": "text", "text": "Free OCR. "},
]}]

# a completion with an image
plain = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
choice = plain.choices[0]
assert choice.message.role == "assistant", choice
assert choice.finish_reason in ("stop", "length"), choice
usage = plain.usage
assert 0 < usage.completion_tokens <= max_tokens, usage
assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
vision = (usage.model_extra or {}).get("vision_tokens")
assert vision and 0 < vision < usage.prompt_tokens, usage

# a streamed one
stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True}
)
pieces, finish, streamed_usage = [], [], None
for chunk in stream:
    if chunk.usage is not None:
        streamed_usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish.append(c.finish_reason)
assert finish == [choice.finish_reason], finish
# token by token: the text came in several pieces, not in one at the end
assert len(pieces) > 1, pieces
assert streamed_usage is not None and streamed_usage.completion_tokens == usage.completion_tokens, streamed_usage

# error cases: an unknown model, a data URL that is not an image
try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=max_tokens)
    raise AssertionError("an unknown model was answered")
except openai.NotFoundError as e:
    assert e.status_code == 404 and "no-such-model" in e.message, e
bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}]
try:
    client.chat.completions.create(model=model, messages=bad, max_tokens=max_tokens)
    raise AssertionError("a text data URL was read as an image")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "text/plain" in e.message, e

assert [m.id for m in client.models.list()] == [model]

# a client that goes away mid-stream: a long answer closed after its first piece of text
long = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8000, stream=True, extra_body={"ignore_eos": True}
)
for chunk in long:
    if chunk.choices and chunk.choices[0].delta.content:
        break
long.close()
# the server keeps serving (with one slot, only once the closed stream's slot is free)
after = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
assert after.choices[0].message.content == choice.message.content, after
print(json.dumps({
    "text": choice.message.content,
    "streamed": "".join(pieces),
    "pieces": len(pieces),
    "completion_tokens": usage.completion_tokens,
}))
