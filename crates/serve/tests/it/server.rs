//! The server over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use occ_core::{Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use occ_serve::pdf;
use serde_json::{json, Value};

use crate::common::*;

const MAX_TOKENS: u64 = 6;

/// The token ids the in-process engine reads from each page (Tiny mode, Free OCR).
fn in_process(pages: &[image::RgbImage], max_tokens: u64) -> Vec<Vec<u32>> {
    let mut engine = tiny_engine();
    let pages: Vec<OcrPage> = pages
        .iter()
        .enumerate()
        .map(|(i, img)| OcrPage { id: i.to_string(), image: img.clone(), mode: Mode::Tiny })
        .collect();
    let opts = OcrOptions { max_new_tokens: max_tokens as usize, ..OcrOptions::default() };
    // one page per call: each page's result alone
    pages
        .iter()
        .map(|p| {
            let out = OcrEngine::ocr(&mut engine, std::slice::from_ref(p), &Prompt::FreeOcr, &opts).unwrap();
            out[0].token_ids.clone().unwrap()
        })
        .collect()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v["token_ids"].clone()).unwrap()
}

#[test]
fn a_completion_has_the_in_process_engines_tokens_text_and_usage() {
    let server = occ_serve::Server::start(config(), Box::new(tiny_engine())).unwrap();
    let img = page(1);
    let want = in_process(std::slice::from_ref(&img), MAX_TOKENS);
    let (status, _, body) = post(&server, &request("tiny", &data_url("image/png", &png(&img)), MAX_TOKENS));
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), want);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], want[0].len());
    // Tiny mode: 64 vision tokens and their newline / separator slots
    let vision = usage["vision_tokens"].as_u64().unwrap();
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(vision >= 64 && prompt > vision, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + want[0].len() as u64);
    let (_, models) = get(&server, "/v1/models");
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");
    server.shutdown();
    server.wait().unwrap();
}

/// One client per page at once against a server (32 in most tests); each answer's token ids.
fn thirty_two_at_once(server: &occ_serve::Server, pages: &[image::RgbImage]) -> Vec<Vec<u32>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pages
            .iter()
            .map(|img| {
                s.spawn(move || {
                    let (status, _, body) =
                        post(server, &request("tiny", &data_url("image/png", &png(img)), MAX_TOKENS));
                    assert_eq!(status, 200, "{body}");
                    ids(&body).remove(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn thirty_two_concurrent_requests_each_equal_their_sequential_result() {
    let pages: Vec<_> = (0..32).map(page).collect();
    let want = in_process(&pages, MAX_TOKENS);
    // live: admitted into the running batcher as they come
    let server = occ_serve::Server::start(config(), Box::new(tiny_engine())).unwrap();
    assert_eq!(thirty_two_at_once(&server, &pages), want);
    // the requests shared decode steps: fewer steps than the answers' tokens after the first
    let steps = metric(&server, "occ_decode_steps_total");
    let sequential: usize = want.iter().map(|w| w.len() - 1).sum();
    assert!(steps > 0.0 && steps < sequential as f64, "{steps} decode steps for {sequential} tokens");
    assert_eq!(metric(&server, "occ_requests_total{code=\"200\"}"), 32.0);
    let generated = want.iter().map(Vec::len).sum::<usize>() as f64;
    // counted by the worker after the last step's answers went out
    eventually("every generated token is counted", || metric(&server, "occ_generated_tokens_total") == generated);
    server.shutdown();
    server.wait().unwrap();
    // per request (the older path, kept for comparison): the same answers, in shared batches
    let mut cfg = config();
    cfg.live = false;
    let server = occ_serve::Server::start(cfg, Box::new(tiny_engine())).unwrap();
    assert_eq!(thirty_two_at_once(&server, &pages), want);
    let batches = metric(&server, "occ_batches_total");
    assert!(batches < 32.0, "{batches} batches for 32 requests");
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_pdf_is_read_page_by_page() {
    let bytes = pdf::text_pdf(&["The first page.", "Page two,\nwith a second line.", "3"]);
    let mut cfg = config();
    cfg.limits.pdf_dpi = 36.0;
    let pages = pdf::rasterize(&bytes, pdf::PageRange::ALL, 36.0, u64::MAX, 10).unwrap();
    assert_eq!(pages.len(), 3);
    let want = in_process(&pages, MAX_TOKENS);
    let server = occ_serve::Server::start(cfg, Box::new(tiny_engine())).unwrap();
    let body = json!({
        "model": "tiny",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": data_url("application/pdf", &bytes), "filename": "doc.pdf"}},
            {"type": "text", "text": "Free OCR. "}
        ]}]
    });
    let (status, _, resp) = post(&server, &body);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp), want);
    // as an image_url data URL too
    let body = request("tiny", &data_url("application/pdf", &bytes), MAX_TOKENS);
    let (status, _, resp) = post(&server, &body);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp), want);
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn every_image_of_a_conversation_is_a_page_and_an_unread_part_is_refused_by_its_index() {
    let pages: Vec<_> = (0..3).map(page).collect();
    let want = in_process(&pages, MAX_TOKENS);
    let server = occ_serve::Server::start(config(), Box::new(tiny_engine())).unwrap();
    let img = |i: usize| json!({"type": "image_url", "image_url": {"url": data_url("image/png", &png(&pages[i]))}});
    // two user messages, three images, the Free-OCR text last: each image read as its own page
    let body = json!({
        "model": "tiny",
        "max_tokens": MAX_TOKENS,
        "messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": [img(0), img(1)]},
            {"role": "user", "content": [img(2), {"type": "text", "text": "Free OCR. "}]}
        ]
    });
    let (status, _, resp) = post(&server, &body);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp), want);
    let text = resp["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.matches("\n\n").count() >= 2, "the pages' texts joined: {text:?}");
    // an image in an assistant message is not read: refused by its index
    let mut bad = body.clone();
    bad["messages"][0] = json!({"role": "assistant", "content": [img(0)]});
    let (status, _, resp) = post(&server, &bad);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["param"], "messages[0].content[0]");
    assert!(resp["error"]["message"].as_str().unwrap().contains("assistant"), "{resp}");
    // an unknown part type: refused by its index
    let mut bad = body.clone();
    bad["messages"][2]["content"][1] = json!({"type": "input_audio", "input_audio": {}});
    let (status, _, resp) = post(&server, &bad);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["param"], "messages[2].content[1]");
    server.shutdown();
    server.wait().unwrap();
    // more pages than the limit: 400 naming it
    let mut cfg = config();
    cfg.limits.max_pdf_pages = 2;
    let server = occ_serve::Server::start(cfg, Box::new(tiny_engine())).unwrap();
    let (status, _, resp) = post(&server, &body);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(
        (resp["error"]["code"].as_str(), resp["error"]["param"].as_str()),
        (Some("too_many_pages"), Some("messages[2].content[0]"))
    );
    assert!(resp["error"]["message"].as_str().unwrap().contains("at most 2"), "{resp}");
    server.shutdown();
    server.wait().unwrap();
}

/// Status and error code of a raw request.
fn raw(server: &occ_serve::Server, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = client()
        .post(format!("http://{}/v1/chat/completions", server.addr()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[test]
fn bad_requests_get_the_right_status_and_a_message() {
    let mut cfg = config();
    cfg.limits.max_image_pixels = 10_000;
    cfg.limits.max_body_bytes = 200_000;
    cfg.limits.max_tokens = 50;
    let gated = Gated::default();
    gated.open();
    let server = occ_serve::Server::start(cfg, Box::new(gated)).unwrap();
    let ok = data_url("image/png", &png(&page(0)));
    let cases: Vec<(&str, u16, &str, Vec<u8>, &str)> = vec![
        ("malformed JSON", 400, "application/json", b"{\"model\": ".to_vec(), "invalid_json"),
        (
            "wrong content type",
            415,
            "text/plain",
            request("tiny", &ok, 5).to_string().into_bytes(),
            "unsupported_media_type",
        ),
        (
            "non-image data URL",
            400,
            "application/json",
            request("tiny", &data_url("text/plain", b"hello"), 5).to_string().into_bytes(),
            "invalid_image_url",
        ),
        (
            "oversized image",
            413,
            "application/json",
            request("tiny", &data_url("image/png", &png(&image::RgbImage::new(200, 100))), 5).to_string().into_bytes(),
            "image_too_large",
        ),
        (
            "unknown model",
            404,
            "application/json",
            request("gpt-9", &ok, 5).to_string().into_bytes(),
            "model_not_found",
        ),
        (
            "max_tokens over the limit",
            400,
            "application/json",
            request("tiny", &ok, 51).to_string().into_bytes(),
            "invalid_max_tokens",
        ),
        (
            "body over the limit",
            413,
            "application/json",
            request("tiny", &data_url("image/png", &vec![0u8; 300_000]), 5).to_string().into_bytes(),
            "request_too_large",
        ),
    ];
    for (what, status, ct, body, code) in cases {
        let (got, body) = raw(&server, ct, body);
        assert_eq!(got, status, "{what}: {body}");
        let err = &body["error"];
        assert_eq!(err["code"], code, "{what}: {body}");
        let message = err["message"].as_str().unwrap();
        assert!(message.len() > 10, "{what}: a message that says what is wrong: {message:?}");
        assert!(err["type"].is_string(), "{what}: {body}");
    }
    let (status, body) = get(&server, "/v2/nothing");
    assert_eq!(status, 404, "{body}");
    // the server still answers
    let (status, _, body) = post(&server, &request("tiny", &ok, 5));
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("page 96x64")));
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_full_queue_gets_503_with_retry_after() {
    let mut cfg = config();
    cfg.limits.max_queue = 2;
    cfg.retry_after_secs = 3;
    let gated = Gated::default();
    let server = occ_serve::Server::start(cfg, Box::new(gated.clone())).unwrap();
    let url = data_url("image/png", &png(&page(0)));
    std::thread::scope(|s| {
        // one request at the model (blocked at the gate), two waiting: the queue is full
        let first = s.spawn(|| post(&server, &request("tiny", &url, 5)));
        eventually("the first request reaches the model", || gated.calls() == 1);
        // a different max_tokens keeps these out of the first batch
        let waiting: Vec<_> = (0..2).map(|_| s.spawn(|| post(&server, &request("tiny", &url, 4)))).collect();
        eventually("two requests wait", || metric(&server, "occ_queue_depth") == 2.0);
        let (status, retry, body) = post(&server, &request("tiny", &url, 4));
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry.as_deref(), Some("3"));
        assert_eq!(body["error"]["code"], "queue_full");
        gated.open();
        assert_eq!(first.join().unwrap().0, 200);
        for w in waiting {
            assert_eq!(w.join().unwrap().0, 200);
        }
    });
    // the two waiting requests were admitted together into the running batcher
    assert_eq!(metric(&server, "occ_batches_total"), 2.0);
    server.shutdown();
    server.wait().unwrap();
}

/// Sends a streamed request by hand and returns the connection after the first event.
fn stream_then_read_first_event(server: &occ_serve::Server, body: &Value) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(server.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.to_string();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        seen.push_str(&line);
        if line.starts_with("data:") {
            break;
        }
    }
    (conn, seen)
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_place_and_the_server_keeps_serving() {
    let mut cfg = config();
    cfg.sse_keep_alive = Duration::from_millis(100);
    let gated = Gated::default();
    let server = occ_serve::Server::start(cfg, Box::new(gated.clone())).unwrap();
    let url = data_url("image/png", &png(&page(0)));
    std::thread::scope(|s| {
        let first = s.spawn(|| post(&server, &request("tiny", &url, 5)));
        eventually("the first request reaches the model", || gated.calls() == 1);
        let mut body = request("tiny", &url, 4);
        body["stream"] = json!(true);
        let (conn, seen) = stream_then_read_first_event(&server, &body);
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        assert!(seen.contains("text/event-stream"), "{seen}");
        assert!(seen.contains("\"role\":\"assistant\""), "{seen}");
        assert_eq!(metric(&server, "occ_queue_depth"), 1.0);
        drop(conn);
        eventually("the disconnected request leaves the queue", || {
            metric(&server, "occ_queue_depth") == 0.0 && metric(&server, "occ_requests_total{code=\"499\"}") == 1.0
        });
        gated.open();
        assert_eq!(first.join().unwrap().0, 200);
    });
    // the disconnected request never reached the model, and the server keeps serving
    assert_eq!(gated.pages_read.load(std::sync::atomic::Ordering::SeqCst), 1);
    let (status, _, _) = post(&server, &request("tiny", &url, 5));
    assert_eq!(status, 200);
    // the gauge is set after the step that sent the answer
    eventually("no slot is taken", || metric(&server, "occ_active_slots") == 0.0);
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_stream_sends_the_role_the_text_the_usage_and_done() {
    let server = occ_serve::Server::start(config(), Box::new(tiny_engine())).unwrap();
    let img = page(3);
    let want = in_process(std::slice::from_ref(&img), MAX_TOKENS);
    let (_, whole, plain) = post(&server, &request("tiny", &data_url("image/png", &png(&img)), MAX_TOKENS));
    assert!(whole.is_none());
    let mut body = request("tiny", &data_url("image/png", &png(&img)), MAX_TOKENS);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let mut resp = client()
        .post(format!("http://{}/v1/chat/completions", server.addr()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut text = String::new();
    resp.read_to_string(&mut text).unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().join("");
    assert_eq!(content, plain["choices"][0]["message"]["content"].as_str().unwrap());
    let finish: Vec<&Value> =
        chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finish.len(), 1);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], want[0].len());
    assert_eq!(usage, &plain["usage"]);
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn shutdown_answers_the_requests_in_flight_then_stops() {
    let gated = Gated::default();
    let server = occ_serve::Server::start(config(), Box::new(gated.clone())).unwrap();
    let url = data_url("image/png", &png(&page(0)));
    let addr = server.addr();
    std::thread::scope(|s| {
        let in_flight = s.spawn(|| post(&server, &request("tiny", &url, 5)));
        eventually("the request reaches the model", || gated.calls() == 1);
        server.shutdown();
        // while draining, health says so
        eventually("health reports draining", || {
            let r = client().get(format!("http://{addr}/health")).send();
            // a refused connection also shows the server no longer takes requests
            r.map(|r| r.status().as_u16() == 503).unwrap_or(true)
        });
        gated.open();
        let (status, _, body) = in_flight.join().unwrap();
        assert_eq!(status, 200, "{body}");
    });
    server.wait().unwrap();
    assert!(TcpStream::connect(addr).is_err(), "the server has stopped listening");
}

#[test]
fn a_request_past_its_timeout_gets_504_and_leaves_the_queue() {
    let mut cfg = config();
    cfg.request_timeout = Duration::from_millis(300);
    let gated = Gated::default();
    let server = occ_serve::Server::start(cfg, Box::new(gated.clone())).unwrap();
    let url = data_url("image/png", &png(&page(0)));
    // the first request holds the model; the second waits in the queue; both time out
    std::thread::scope(|s| {
        let first = s.spawn(|| post(&server, &request("tiny", &url, 5)));
        eventually("the first request reaches the model", || gated.calls() == 1);
        let (status, _, body) = post(&server, &request("tiny", &url, 4));
        assert_eq!((status, body["error"]["code"].as_str()), (504, Some("timeout")), "{body}");
        let (status, _, _) = first.join().unwrap();
        assert_eq!(status, 504);
    });
    assert_eq!(metric(&server, "occ_queue_depth"), 0.0);
    assert_eq!(metric(&server, "occ_requests_total{code=\"504\"}"), 2.0);
    assert_eq!(metric(&server, "occ_requests_total{code=\"499\"}"), 0.0);
    gated.open();
    // the queued request never reached the model
    eventually("the model is free", || metric(&server, "occ_active_slots") == 0.0);
    assert_eq!(gated.pages_read.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.shutdown();
    server.wait().unwrap();
}

/// The `data:` payloads of a whole SSE body, `[DONE]` excluded, as JSON.
fn chunks(text: &str) -> Vec<Value> {
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

#[test]
fn a_live_stream_sends_the_text_token_by_token() {
    let server = occ_serve::Server::start(config(), Box::new(tiny_engine())).unwrap();
    let img = page(5);
    let mut body = request("tiny", &data_url("image/png", &png(&img)), 24);
    body["ignore_eos"] = json!(true);
    let (status, _, plain) = post(&server, &body);
    assert_eq!(status, 200, "{plain}");
    body["stream"] = json!(true);
    let text = client()
        .post(format!("http://{}/v1/chat/completions", server.addr()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let chunks = chunks(&text);
    let pieces: Vec<&str> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"].is_null())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pieces.concat(), plain["choices"][0]["message"]["content"].as_str().unwrap());
    // 24 tokens: the text came in pieces as they were decoded, not in one chunk at the end
    assert!(pieces.len() >= 4, "{} pieces: {pieces:?}", pieces.len());
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_stream_dropped_after_its_first_token_frees_its_slot_mid_decode() {
    // one slot: a later request is read only once the dropped stream's slot is free
    let mut engine = tiny_engine();
    engine.max_batch = 1;
    let mut cfg = config();
    cfg.sse_keep_alive = Duration::from_millis(100);
    let server = occ_serve::Server::start(cfg, Box::new(engine)).unwrap();
    let url = data_url("image/png", &png(&page(2)));
    let long = 8000;
    let mut body = request("tiny", &url, long);
    body["ignore_eos"] = json!(true);
    body["stream"] = json!(true);
    let (conn, _) = stream_then_read_first_event(&server, &body);
    // read on to the first piece of text: the page is decoding in the slot
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            let chunk: Value = serde_json::from_str(data.trim()).unwrap();
            if chunk["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()) {
                break;
            }
        }
    }
    // (the gauge is set after the step whose first token the stream already sent)
    eventually("the page holds the slot", || metric(&server, "occ_active_slots") == 1.0);
    drop(reader);
    drop(conn);
    // a later request gets the slot and is answered
    let (status, _, answer) = post(&server, &request("tiny", &url, MAX_TOKENS));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids(&answer), in_process(&[page(2)], MAX_TOKENS));
    eventually("the dropped stream is counted", || metric(&server, "occ_requests_total{code=\"499\"}") == 1.0);
    let steps = metric(&server, "occ_decode_steps_total");
    assert!(steps < (long / 2) as f64, "the dropped page was cancelled mid-decode: {steps} steps");
    eventually("the slot is free", || metric(&server, "occ_active_slots") == 0.0);
    server.shutdown();
    server.wait().unwrap();
}

/// The free-memory figure whose plan fits exactly `slots` decoder slots for the server's live
/// batcher: Tiny pages (a blank Tiny page's prompt, as the session plans it) answering
/// `max_tokens` tokens, prefill batches of up to 8.
fn free_for_slots(engine: &occ_model::pipeline::DeepseekOcr, max_tokens: usize, slots: usize) -> u64 {
    use occ_model::batcher::BatcherConfig;
    use occ_model::memory_plan::{Sequences, SlotMemory, RESERVE_BYTES};
    let (w, h) = Mode::Tiny.default_canvas();
    let blank = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let prompt_len = engine.prepare_page(&blank, Mode::Tiny, &Prompt::FreeOcr).unwrap().tokens.ids.len();
    let d = engine.decoder();
    let bc = BatcherConfig { prefill_batch: 8, initial_new_tokens: 1536 - prompt_len, ..BatcherConfig::default() };
    let plan = SlotMemory::new(d.config(), d.dtype(), Sequences { prompt_len, max_new_tokens: max_tokens }, &bc);
    let free = (plan.bytes_for(slots, 0) + RESERVE_BYTES) * 10 / 9 + 10;
    assert_eq!(plan.max_slots(free, 0), slots, "the figure fits exactly {slots} slots");
    free
}

/// The /health body as JSON.
fn health(server: &occ_serve::Server) -> Value {
    let (status, text) = get(server, "/health");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_max_batch_above_what_fits_the_free_memory_is_lowered_reported_and_still_answers() {
    let pages: Vec<_> = (0..5).map(page).collect();
    let want = in_process(&pages, MAX_TOKENS);
    let max_tokens = 16;
    let mut engine = tiny_engine();
    engine.max_batch = 8;
    let free = free_for_slots(&engine, max_tokens, 2);
    let mut cfg = config();
    cfg.limits.max_tokens = max_tokens;
    cfg.free_memory = Some(free);
    let server = occ_serve::Server::start(cfg, Box::new(engine)).unwrap();
    // asked for 8, 2 fit: the server runs 2 and says so
    let fit = server.slots().expect("the live batcher's slots");
    assert_eq!((fit.requested, fit.used, fit.limit, fit.free_bytes), (8, 2, Some(2), Some(free)));
    assert!(fit.lowered() && fit.bytes_per_slot > 0, "{fit:?}");
    let h = health(&server);
    assert_eq!(
        (h["slots"].as_u64(), h["requested_slots"].as_u64(), h["fits_slots"].as_u64()),
        (Some(2), Some(8), Some(2))
    );
    assert!((h["free_gpu_gb"].as_f64().unwrap() - free as f64 / 1e9).abs() < 1e-9, "{h}");
    assert!(h["gb_per_slot"].as_f64().unwrap() > 0.0, "{h}");
    assert_eq!(metric(&server, "occ_decoder_slots"), 2.0);
    assert_eq!(metric(&server, "occ_decoder_slots_requested"), 8.0);
    assert_eq!(metric(&server, "occ_decoder_slots_fit"), 2.0);
    // five concurrent requests through two slots: each answered with its in-process tokens
    let got = thirty_two_at_once(&server, &pages);
    assert_eq!(got, want);
    // never more than the two slots decoding at once: at least ceil(5 / 2) rounds of steps
    let steps = metric(&server, "occ_decode_steps_total");
    assert!(steps >= 3.0 * (MAX_TOKENS - 1) as f64, "{steps} decode steps for 5 pages through 2 slots");
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn without_a_memory_figure_the_cpu_serves_the_slots_asked_for() {
    let mut engine = tiny_engine();
    engine.max_batch = 3;
    let server = occ_serve::Server::start(config(), Box::new(engine)).unwrap();
    let fit = server.slots().expect("the live batcher's slots");
    assert_eq!((fit.requested, fit.used, fit.limit, fit.free_bytes), (3, 3, None, None));
    let h = health(&server);
    assert_eq!((h["slots"].as_u64(), h["requested_slots"].as_u64()), (Some(3), Some(3)));
    assert!(h["fits_slots"].is_null() && h["free_gpu_gb"].is_null(), "{h}");
    assert_eq!(metric(&server, "occ_decoder_slots"), 3.0);
    let (_, text) = get(&server, "/metrics");
    assert!(!text.contains("occ_decoder_slots_fit"), "{text}");
    server.shutdown();
    server.wait().unwrap();
    // per request: no live batcher, no slots reported
    let mut cfg = config();
    cfg.live = false;
    let server = occ_serve::Server::start(cfg, Box::new(tiny_engine())).unwrap();
    assert_eq!(server.slots(), None);
    assert!(health(&server).get("slots").is_none());
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_server_where_not_even_one_slot_fits_refuses_to_start() {
    let mut cfg = config();
    // all of it kept back by the planner's margin
    cfg.free_memory = Some(occ_model::memory_plan::RESERVE_BYTES);
    let err = occ_serve::Server::start(cfg, Box::new(tiny_engine())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("out of memory") && msg.contains("decoder slot"), "{msg}");
    assert!(!msg.contains('\n'), "one line, no backtrace: {msg}");
}
