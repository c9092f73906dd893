"""The model engines: DeepSeek-OCR on tiny synthetic weights, and the same reader through
`compress-bench serve` and `OpenAIEngine`."""

from __future__ import annotations

import pytest

import compress_bench as cb


@pytest.fixture(scope="module")
def page():
    return cb.render("The quick brown fox jumps over the lazy dog. " * 6, mode="tiny", ratio=4)


def test_deepseek_ocr_on_tiny_synthetic_weights(page):
    engine = cb.DeepSeekOcr(synthetic="tiny")
    assert engine.info["synthetic_weights"] and engine.info["device"] == "cpu" and engine.info["dtype"] == "f32"
    out = engine.ocr([page, page], max_new_tokens=6)
    assert len(out) == 2 and out[0].text == out[1].text
    assert out[0].n_generated_tokens <= 6 and out[0].n_prompt_tokens > page.vision_tokens["slots"]
    assert out[0].token_ids is not None


def test_openai_engine_through_the_server_reads_what_the_local_engine_reads(server, page):
    local = cb.DeepSeekOcr(synthetic="tiny", seed=0).ocr(page, max_new_tokens=8)[0]
    remote = cb.OpenAIEngine(server, "deepseek-ocr", send_mode=True).ocr(page, max_new_tokens=8)[0]
    assert remote.text == local.text
    assert remote.n_generated_tokens == local.n_generated_tokens


def test_model_engine_errors_name_what_is_missing(tmp_path):
    with pytest.raises(cb.EngineError, match=str(tmp_path)):
        cb.DeepSeekOcr(weights=tmp_path)
    with pytest.raises(cb.EngineError, match="mini reader"):
        cb.MiniReader(tmp_path / "none")
    with pytest.raises(ValueError, match="weights=DIR"):
        cb.DeepSeekOcr()
    with pytest.raises(ValueError, match="synthetic"):
        cb.DeepSeekOcr(synthetic="huge")
    with pytest.raises(ValueError, match="http"):
        cb.OpenAIEngine("localhost:8000", "m")
    with pytest.raises(cb.EngineError, match="127.0.0.1:9"):
        cb.OpenAIEngine("http://127.0.0.1:9/v1", "m", retries=0, timeout=5).ocr(
            cb.render("x", mode="tiny", font_px=20))
