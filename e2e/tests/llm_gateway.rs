//! The `llm_gateway` example in real Envoy: exact token numbers from every provider and shape —
//! an OpenAI chat stream (cut at awkward places, usage injected into the request), an OpenAI
//! Responses stream whose final event is over 1 MiB, an OpenAI JSON body, an Anthropic JSON
//! body and an Anthropic stream with cache tokens, a Gemini stream and a Gemini JSON body —
//! each passed to the client byte for byte; budgets answer 429 with `retry-after` once spent
//! and refill after the window; 200 overlapping streams are admitted by reservation, within
//! the budget plus what they use beyond their estimates; a client that leaves mid-stream
//! gives its reservation back.

use jisr_e2e::client;
use jisr_e2e::telemetry::{OtlpReceiver, RateLimitService, parse_prometheus};
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, HttpFilter, Listener, Route, Upstream, access_field,
    module_filter, module_stat, wait_until,
};
use serde_json::Value;
use std::time::Duration;

/// An OpenAI chat stream; its last chunk before `[DONE]` carries usage and no choices, and
/// is sent only when the request asked for it (`stream_options.include_usage: true`).
fn openai_chat(with_usage: bool) -> Vec<u8> {
    let mut s = String::new();
    for word in ["Hel", "lo", " there"] {
        s.push_str(&format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\"{word}\"}}}}],\"usage\":null}}\n\n"
        ));
    }
    if with_usage {
        s.push_str(OPENAI_USAGE_CHUNK);
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

/// The usage-only chunk of [`openai_chat`].
const OPENAI_USAGE_CHUNK: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":9,\"total_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":5},\"completion_tokens_details\":{\"reasoning_tokens\":2}}}\n\n";

/// An OpenAI Responses stream whose `response.completed` repeats a long output before usage.
fn openai_responses(output_len: usize) -> Vec<u8> {
    let text = "x".repeat(output_len);
    format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"r1\"}}}}\n\n\
         event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"r1\",\
         \"output\":[{{\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\
         \"usage\":{{\"input_tokens\":1000,\"output_tokens\":250000,\"input_tokens_details\":{{\"cached_tokens\":0}},\
         \"output_tokens_details\":{{\"reasoning_tokens\":10}}}}}}}}\n\n"
    )
    .into_bytes()
}

const ANTHROPIC_JSON: &str = r#"{"id":"m1","type":"message","role":"assistant","content":[{"type":"text","text":"\"usage\":{\"input_tokens\":999}"}],"usage":{"input_tokens":40,"output_tokens":12,"cache_read_input_tokens":30,"cache_creation_input_tokens":7}}"#;

/// An Anthropic Messages stream: input and cache counts in `message_start`, the cumulative
/// output in `message_delta`; a fake usage inside the generated text.
const ANTHROPIC_SSE: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m2\",\"model\":\"claude-opus-4\",\"usage\":{\"input_tokens\":55,\"cache_creation_input_tokens\":4,\"cache_read_input_tokens\":120,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\\"usage\\\":{\\\"output_tokens\\\":999}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":17}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// A Gemini `generateContent` answer (not streamed).
const GEMINI_JSON: &str = r#"{"candidates":[{"content":{"parts":[{"text":"usageMetadata"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2,"thoughtsTokenCount":14,"totalTokenCount":25},"modelVersion":"gemini-2.5-pro"}"#;

/// A Gemini `streamGenerateContent?alt=sse` stream: usage metadata in each chunk, last wins.
const GEMINI_SSE: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}],\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":1,\"totalTokenCount\":12}}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" there\"}]}}],\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":4,\"cachedContentTokenCount\":3,\"thoughtsTokenCount\":6,\"totalTokenCount\":21}}\r\n\r\n";

/// An OpenAI chat completion, not streamed.
const OPENAI_JSON: &str = r#"{"id":"c2","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}"#;

struct Gw {
    envoy: Envoy,
    openai: Upstream,
    _anthropic: Upstream,
    _gemini: Upstream,
}

/// The fleet setup of `examples/llm_gateway.rs`: Envoy's global rate-limit filter after the
/// gateway, and a route rate limit applied when the stream is done, per API key. The filter
/// charges the hits the gateway left in the filter state `envoy.ratelimit.hits_addend` (the
/// response's total tokens).
const FLEET_ROUTE: &str = r#"- match: { prefix: "/" }
  route:
    cluster_header: x-cluster
    timeout: 30s
    rate_limits:
    - actions:
      - request_headers: { header_name: x-api-key, descriptor_key: api_key }
      apply_on_stream_done: true
"#;

const RATE_LIMIT_FILTER: &str = r#""@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
domain: llm
failure_mode_deny: false
rate_limit_service:
  grpc_service: { envoy_grpc: { cluster_name: rls } }
  transport_api_version: V3"#;

fn start(budget: u64, window_ms: u64) -> Gw {
    start_with(budget, window_ms, None)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` in content coding `coding`, by independent encoders; an unknown coding (the fake
/// `x-snappy`) is the bytes reversed, which nobody can read as the original.
fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
            out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
            out.extend_from_slice(&crc32(data).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out
        }
        "deflate" => miniz_oxide::deflate::compress_to_vec_zlib(data, 6),
        "br" => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams {
                quality: 9,
                lgwin: 20,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
            out
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        _ => data.iter().rev().copied().collect(),
    }
}

/// [`start`], with Envoy's rate-limit filter charging `rls` when given.
fn start_with(budget: u64, window_ms: u64, rls: Option<u16>) -> Gw {
    start_configured(budget, window_ms, rls, "")
}

/// [`start_with`], with `extra` (`, "key": value` pairs) added to the filter config.
fn start_configured(budget: u64, window_ms: u64, rls: Option<u16>, extra: &str) -> Gw {
    start_full(budget, window_ms, rls, extra, |c| c)
}

/// [`start_configured`], with `tweak` applied to Envoy's config last.
fn start_full(
    budget: u64,
    window_ms: u64,
    rls: Option<u16>,
    extra: &str,
    tweak: impl FnOnce(EnvoyConfig) -> EnvoyConfig,
) -> Gw {
    // Like the real API: usage only when asked for, and a Responses request naming
    // `stream_options.include_usage` refused (that API has no such field).
    let openai = Upstream::start_with("openai", |req, w| {
        let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if req.path.starts_with("/v1/responses") {
            if v.pointer("/stream_options/include_usage").is_some() {
                w.status(400)
                    .header("content-type", "application/json")
                    .send(br#"{"error":{"message":"Unknown parameter: 'stream_options.include_usage'.","type":"invalid_request_error","param":"stream_options.include_usage","code":"unknown_parameter"}}"#);
                return;
            }
            w.header("content-type", "text/event-stream")
                .start_chunked();
            let body = openai_responses(1_200_000);
            for piece in body.chunks(65_537) {
                w.chunk(piece);
            }
            w.finish();
            return;
        }
        if v["stream"] != true {
            w.header("content-type", "application/json")
                .send(OPENAI_JSON.as_bytes());
            return;
        }
        // A slow stream: one content chunk, a pause, then the usage the test asked for.
        if let Some(hold) = req.header("x-fake-hold-ms").and_then(|h| h.parse().ok()) {
            let (input, output) = req
                .header("x-fake-usage")
                .and_then(|u| u.split_once(','))
                .map_or((21, 9), |(i, o)| {
                    (i.parse::<u64>().unwrap(), o.parse::<u64>().unwrap())
                });
            w.header("content-type", "text/event-stream")
                .start_chunked();
            w.chunk(b"data: {\"id\":\"c9\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n");
            w.sleep(Duration::from_millis(hold));
            w.chunk(format!(
                "data: {{\"id\":\"c9\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{input},\"completion_tokens\":{output},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
                input + output
            )
            .as_bytes());
            w.finish();
            return;
        }
        w.header("content-type", "text/event-stream")
            .start_chunked();
        // Cut at awkward places: inside keys, numbers and the event boundary.
        let body = openai_chat(v["stream_options"]["include_usage"] == true);
        for piece in body.chunks(7) {
            w.chunk(piece);
        }
        w.finish();
    });
    // Compresses its answers in the first coding the request accepts, as providers do.
    let anthropic = Upstream::start_with("anthropic", |req, w| {
        let (body, content_type) = if req.body.windows(13).any(|x| x == b"\"stream\":true") {
            (ANTHROPIC_SSE, "text/event-stream")
        } else {
            (ANTHROPIC_JSON, "application/json")
        };
        w.header("content-type", content_type);
        let coding = req
            .header("accept-encoding")
            .and_then(|a| a.split(',').next())
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .filter(|c| !c.is_empty() && c != "identity");
        let body = match coding {
            Some(c) => {
                w.header("content-encoding", &c);
                let mut encoded = encode(&c, body.as_bytes());
                if req.header("x-fake-corrupt").is_some() {
                    for b in encoded.iter_mut().skip(12).step_by(3) {
                        *b ^= 0x5a;
                    }
                }
                encoded
            }
            None => body.as_bytes().to_vec(),
        };
        w.start_chunked();
        for piece in body.chunks(11) {
            w.chunk(piece);
        }
        w.finish();
    });
    let gemini = Upstream::start_with("gemini", |req, w| {
        if !req.path.contains("alt=sse") {
            w.header("content-type", "application/json").start_chunked();
            for piece in GEMINI_JSON.as_bytes().chunks(5) {
                w.chunk(piece);
            }
            w.finish();
            return;
        }
        w.header("content-type", "text/event-stream")
            .start_chunked();
        for piece in GEMINI_SSE.as_bytes().chunks(13) {
            w.chunk(piece);
        }
        w.finish();
    });
    let config = format!(
        r#"{{"keys": ["k1", "k2"], "budget_tokens": {budget}, "window_ms": {window_ms}, "max_body": 65536{extra}}}"#
    );
    let mut listener = Listener::new("gw")
        .filter(module_filter("llm_gateway", "llm_gateway", Some(&config)))
        .log_field("in", "%DYNAMIC_METADATA(llm_gateway:input_tokens)%")
        .log_field("out", "%DYNAMIC_METADATA(llm_gateway:output_tokens)%")
        .log_field("hits", "%DYNAMIC_METADATA(envoy.ratelimit:hits_addend)%");
    let mut cfg = EnvoyConfig::new()
        .cluster(Cluster::new("openai", openai.port()))
        .cluster(Cluster::new("anthropic", anthropic.port()))
        .cluster(Cluster::new("gemini", gemini.port()));
    match rls {
        Some(port) => {
            listener = listener
                .filter(HttpFilter::raw(
                    "envoy.filters.http.ratelimit",
                    RATE_LIMIT_FILTER,
                ))
                .route(Route::Raw(FLEET_ROUTE.into()));
            cfg = cfg.cluster(Cluster::new("rls", port).http2());
        }
        None => listener = listener.route(Route::cluster_header("/", "x-cluster")),
    }
    let envoy = Envoy::start(&tweak(cfg.listener(listener)));
    Gw {
        envoy,
        openai,
        _anthropic: anthropic,
        _gemini: gemini,
    }
}

fn post(gw: &Gw, key: &str, path: &str, body: &str) -> client::Response {
    post_with(gw, key, path, body, &[])
}

fn post_with(
    gw: &Gw,
    key: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> client::Response {
    let mut all = vec![("x-api-key", key), ("content-type", "application/json")];
    all.extend_from_slice(headers);
    client::request(
        gw.envoy.listener_port("gw"),
        "POST",
        path,
        &all,
        body.as_bytes(),
    )
}

fn unbilled(gw: &Gw, reason: &str) -> Option<u64> {
    gw.envoy
        .counter(&module_stat("llm_gateway_unbilled", &[("reason", reason)]))
}

fn tokens(gw: &Gw, provider: &str, model: &str, kind: &str) -> Option<u64> {
    gw.envoy.counter(&module_stat(
        "llm_gateway_tokens",
        &[("provider", provider), ("model", model), ("kind", kind)],
    ))
}

#[test]
fn exact_usage_from_every_shape_and_include_usage_injected() {
    let gw = start(10_000_000, 60_000);
    // OpenAI chat, streaming, without include_usage: the gateway asks for it.
    let r = post(
        &gw,
        "k1",
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    let sent = gw.openai.requests().pop().unwrap();
    let v: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(v["stream_options"]["include_usage"].as_bool(), Some(true));
    let exact = |kind, want| {
        assert!(
            wait_until(Duration::from_secs(5), || tokens(
                &gw, "openai", "gpt-4o", kind
            ) == Some(want)),
            "{kind}: {:?}",
            tokens(&gw, "openai", "gpt-4o", kind)
        )
    };
    exact("input", 21);
    exact("output", 9);
    exact("cached_input", 5);
    exact("reasoning", 2);
    // OpenAI Responses with a final event over 1 MiB.
    let r = post(
        &gw,
        "k1",
        "/v1/responses",
        r#"{"model":"o3-mini","stream":true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.len() > 1_200_000);
    assert!(
        wait_until(Duration::from_secs(5), || tokens(
            &gw, "openai", "o3-mini", "output"
        ) == Some(250_000)),
        "{:?}",
        tokens(&gw, "openai", "o3-mini", "output")
    );
    assert_eq!(tokens(&gw, "openai", "o3-mini", "reasoning"), Some(10));
    // Anthropic JSON body: cache tokens; the fake usage inside the text is ignored.
    let r = post(
        &gw,
        "k2",
        "/v1/messages",
        r#"{"model":"claude-sonnet-4","max_tokens":10}"#,
    );
    assert_eq!(r.status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || tokens(
            &gw,
            "anthropic",
            "claude-sonnet-4",
            "input"
        ) == Some(40)),
        "{}",
        gw.envoy.stats()
    );
    assert_eq!(
        tokens(&gw, "anthropic", "claude-sonnet-4", "cached_input"),
        Some(30)
    );
    assert_eq!(
        tokens(&gw, "anthropic", "claude-sonnet-4", "cache_creation_input"),
        Some(7)
    );
    assert_eq!(
        tokens(&gw, "anthropic", "claude-sonnet-4", "reasoning"),
        None
    );
    // Metadata for access logs and for Envoy's rate-limit filter.
    let lines = gw.envoy.wait_for_access_lines(3, Duration::from_secs(5));
    let third = &lines[2];
    assert_eq!(access_field(third, "in"), Some("40"), "{lines:?}");
    assert_eq!(access_field(third, "hits"), Some("52"), "{lines:?}");
    // Gemini SSE (CRLF framing, cut every 13 bytes): the last chunk's usage metadata.
    let r = post(
        &gw,
        "k2",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        r#"{"model":"gemini-2.5-flash"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, GEMINI_SSE.as_bytes());
    let g = |kind| tokens(&gw, "gemini", "gemini-2.5-flash", kind);
    assert!(
        wait_until(Duration::from_secs(5), || g("output") == Some(4)),
        "{:?}",
        g("output")
    );
    assert_eq!(
        (g("input"), g("cached_input"), g("reasoning")),
        (Some(11), Some(3), Some(6))
    );
    // OpenAI chat, not streamed: the JSON body's usage, and the body byte for byte.
    let r = post(
        &gw,
        "k1",
        "/v1/chat/completions",
        r#"{"model":"gpt-4.1","stream":false}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, OPENAI_JSON.as_bytes());
    let o = |kind| tokens(&gw, "openai", "gpt-4.1", kind);
    assert!(
        wait_until(Duration::from_secs(5), || o("input") == Some(8)),
        "{:?}",
        o("input")
    );
    assert_eq!((o("output"), o("cached_input")), (Some(3), None));
    // Anthropic stream, cut every 11 bytes: input and cache counts from message_start, the
    // output from message_delta, not the fake one in the text.
    let r = post(
        &gw,
        "k2",
        "/v1/messages",
        r#"{"model":"claude-opus-4","stream":true,"max_tokens":10}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, ANTHROPIC_SSE.as_bytes());
    let a = |kind| tokens(&gw, "anthropic", "claude-opus-4", kind);
    assert!(
        wait_until(Duration::from_secs(5), || a("output") == Some(17)),
        "{:?}",
        a("output")
    );
    assert_eq!(
        (a("input"), a("cached_input"), a("cache_creation_input")),
        (Some(55), Some(120), Some(4))
    );
    assert_eq!(a("reasoning"), None);
    // Gemini JSON answer, cut every 5 bytes; "usageMetadata" inside the text is not usage.
    let r = post(
        &gw,
        "k2",
        "/v1beta/models/gemini-2.5-pro:generateContent",
        r#"{"model":"gemini-2.5-pro"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, GEMINI_JSON.as_bytes());
    let g = |kind| tokens(&gw, "gemini", "gemini-2.5-pro", kind);
    assert!(
        wait_until(Duration::from_secs(5), || g("input") == Some(9)),
        "{:?}",
        g("input")
    );
    assert_eq!(
        (g("output"), g("reasoning"), g("cached_input")),
        (Some(2), Some(14), None)
    );
    // Refused before any upstream work.
    assert_eq!(post(&gw, "nope", "/v1/messages", "{}").status, 401);
    let big = format!(r#"{{"model":"gpt-4o","pad":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(post(&gw, "k1", "/v1/chat/completions", &big).status, 413);
}

#[test]
fn budgets_answer_429_with_retry_after_and_refill() {
    let gw = start(60, 2000);
    // 43 bytes and `max_tokens` 12: 11 + 12 = 23 reserved; the answer uses 40 + 12 = 52.
    let body = r#"{"model":"claude-sonnet-4","max_tokens":12}"#;
    // The first spends 52 of 60; the second's 23 no longer fit.
    assert_eq!(post(&gw, "k1", "/v1/messages", body).status, 200);
    let r = post(&gw, "k1", "/v1/messages", body);
    assert_eq!(r.status, 429, "{}", r.text());
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    // Another key has its own budget.
    assert_eq!(post(&gw, "k2", "/v1/messages", body).status, 200);
    std::thread::sleep(Duration::from_secs(secs));
    assert!(
        wait_until(Duration::from_secs(2), || post(
            &gw,
            "k1",
            "/v1/messages",
            body
        )
        .status
            == 200),
        "budget not refilled"
    );
}

/// A streaming chat request of exactly `len` bytes (padded in its message), with
/// `max_tokens` when given.
fn chat_of_len(len: usize, max_tokens: Option<u64>) -> String {
    let max = max_tokens.map_or(String::new(), |m| format!(r#""max_tokens":{m},"#));
    let head =
        format!(r#"{{"model":"gpt-4o","stream":true,{max}"messages":[{{"role":"user","content":""#);
    let tail = r#""}]}"#;
    let pad = len - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// Tokens billed for `gpt-4o` (input + output).
fn billed_gpt4o(gw: &Gw) -> u64 {
    tokens(gw, "openai", "gpt-4o", "input").unwrap_or(0)
        + tokens(gw, "openai", "gpt-4o", "output").unwrap_or(0)
}

/// 200 streams at once against a budget of 10 000 tokens, each using 100 (40 in, 60 out) and
/// held open for 2 s, so all overlap. Half say `max_tokens: 60` (reserved 160 / 4 + 60 = 100,
/// exact), half say nothing (reserved 40 + `default_output_tokens` 54 = 94, 6 short). Only
/// what fits is admitted: the tokens charged stay within the budget plus what the admitted
/// requests used beyond their estimates (at most 10 % plus one request); the rest get 429
/// with `retry-after`. Charging at the end only admitted all 200 and charged 20 000.
#[test]
fn concurrent_streams_are_admitted_by_reservation() {
    const LIMIT: u64 = 10_000;
    let gw = start_configured(LIMIT, 60_000, None, r#", "default_output_tokens": 54"#);
    let port = gw.envoy.listener_port("gw");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let results: Vec<(u16, Option<String>)> = (0..200)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let body = chat_of_len(160, (i % 2 == 0).then_some(60));
                assert_eq!(body.len(), 160);
                barrier.wait();
                let r = client::request(
                    port,
                    "POST",
                    "/v1/chat/completions",
                    &[
                        ("x-api-key", "k1"),
                        ("content-type", "application/json"),
                        ("x-fake-hold-ms", "2000"),
                        ("x-fake-usage", "40,60"),
                    ],
                    body.as_bytes(),
                );
                (r.status, r.header("retry-after").map(str::to_string))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let admitted = results.iter().filter(|(s, _)| *s == 200).count() as u64;
    for (status, retry_after) in &results {
        match status {
            200 => {}
            429 => {
                let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
                assert!((1..=60).contains(&secs), "{secs}");
            }
            other => panic!("status {other}: {}", gw.envoy.log()),
        }
    }
    let charged = billed_gpt4o(&gw);
    assert_eq!(charged, admitted * 100, "every admitted stream billed");
    eprintln!("admitted {admitted} of 200, charged {charged} of {LIMIT}");
    assert!(
        charged <= LIMIT + LIMIT / 10 + 100,
        "admitted {admitted}, charged {charged}"
    );
    assert!(charged >= LIMIT - 200, "the budget was used: {charged}");
    assert!(admitted < 200);
    // The requests without `max_tokens` (odd) used 6 tokens beyond their reservations each.
    let short = results
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|(s, _)| *s == 200)
        .count() as u64;
    let overrun = gw
        .envoy
        .counter(&module_stat("llm_gateway_reservation_overrun_tokens", &[]));
    assert_eq!(overrun.unwrap_or(0), 6 * short);
}

/// A client that leaves mid-stream gives its reservation back: while its stream (9 040
/// reserved of 10 000) is open, a request reserving 5 040 is refused; once it left, the same
/// request is admitted.
#[test]
fn a_client_that_leaves_mid_stream_releases_its_reservation() {
    let gw = start(10_000, 60_000);
    let port = gw.envoy.listener_port("gw");
    let big = chat_of_len(160, Some(9_000));
    let mut open = client::stream(
        port,
        "POST",
        "/v1/chat/completions",
        &[
            ("x-api-key", "k1"),
            ("content-type", "application/json"),
            ("x-fake-hold-ms", "20000"),
        ],
        big.as_bytes(),
    )
    .unwrap();
    assert_eq!(open.status, 200);
    let first = open.next_bytes(4096).unwrap().unwrap();
    assert!(
        first.starts_with(b"data: "),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let next = chat_of_len(160, Some(5_000));
    let r = post(&gw, "k1", "/v1/chat/completions", &next);
    assert_eq!(r.status, 429, "reserved by the open stream: {}", r.text());
    drop(open);
    assert!(
        wait_until(Duration::from_secs(5), || post(
            &gw,
            "k1",
            "/v1/chat/completions",
            &next
        )
        .status
            == 200),
        "the reservation leaked: {}",
        gw.envoy.log()
    );
    assert_eq!(
        billed_gpt4o(&gw),
        30,
        "only the admitted request was billed"
    );
}

/// The fleet budget: with the documented configuration (`FLEET_ROUTE`, `RATE_LIMIT_FILTER`),
/// Envoy's rate-limit filter charges a rate-limit service once per response, when the stream
/// is done, with the API key as the descriptor and the response's total tokens (input +
/// output, from the gateway's filter state `envoy.ratelimit.hits_addend`) as the request's
/// hits: 40 + 12 = 52 for the Anthropic answer, 55 + 17 = 72 for the Anthropic stream.
/// Nothing is charged before the response.
#[test]
fn fleet_budget_is_charged_to_the_rate_limit_service_at_stream_end() {
    let rls = RateLimitService::start();
    let gw = start_with(10_000_000, 60_000, Some(rls.port()));
    let r = post(&gw, "k1", "/v1/messages", r#"{"model":"claude-sonnet-4"}"#);
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    let charged = |key: &'static str, hits: u64| {
        rls.wait_for(Duration::from_secs(5), move |c| {
            c["descriptors"][0]["entries"]["api_key"] == key && c["hits_addend"] == hits
        })
    };
    let call =
        charged("k1", 52).unwrap_or_else(|| panic!("no charge of 52 for k1: {:#?}", rls.calls()));
    assert_eq!(call["domain"], "llm", "{call}");
    assert_eq!(
        call["descriptors"].as_array().map(Vec::len),
        Some(1),
        "{call}"
    );
    let r = post(
        &gw,
        "k2",
        "/v1/messages",
        r#"{"model":"claude-opus-4","stream":true}"#,
    );
    assert_eq!(r.status, 200);
    charged("k2", 72).unwrap_or_else(|| panic!("no charge of 72 for k2: {:#?}", rls.calls()));
    // One call per response, both at stream end: nothing was sent on the request path.
    assert_eq!(rls.calls().len(), 2, "{:#?}", rls.calls());
}

/// `"stream_options": null` (which the OpenAI API accepts) is a request that did not ask for
/// usage: the gateway asks for it, and the stream is billed.
#[test]
fn stream_options_null_still_gets_usage_billed() {
    let gw = start(10_000_000, 60_000);
    let r = post(
        &gw,
        "k1",
        "/v1/chat/completions",
        r#"{"model":"gpt-4o-mini","stream":true,"stream_options":null,"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    let sent = gw.openai.requests().pop().unwrap();
    let v: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true, "{v}");
    assert!(
        wait_until(Duration::from_secs(5), || tokens(
            &gw,
            "openai",
            "gpt-4o-mini",
            "input"
        ) == Some(21)),
        "{}",
        gw.envoy.stats()
    );
    assert_eq!(tokens(&gw, "openai", "gpt-4o-mini", "output"), Some(9));
}

/// The Responses API reports usage in `response.completed` and its `stream_options` has no
/// `include_usage`: its requests reach the provider unchanged, and are still billed.
#[test]
fn responses_api_requests_are_not_given_include_usage() {
    let gw = start(10_000_000, 60_000);
    let body = r#"{"model":"o4-mini","stream":true,"stream_options":{"include_obfuscation":false},"input":"hi"}"#;
    let r = post(&gw, "k1", "/v1/responses", body);
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = gw.openai.requests().pop().unwrap();
    assert_eq!(sent.body, body.as_bytes());
    let r = post(
        &gw,
        "k1",
        "/v1/responses?x=1",
        r#"{"model":"o4-mini","stream":true,"input":"hi"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = gw.openai.requests().pop().unwrap();
    assert_eq!(
        sent.body,
        br#"{"model":"o4-mini","stream":true,"input":"hi"}"#
    );
    assert!(
        wait_until(Duration::from_secs(5), || tokens(
            &gw, "openai", "o4-mini", "output"
        ) == Some(500_000)),
        "{:?}",
        tokens(&gw, "openai", "o4-mini", "output")
    );
}

/// A billable request whose body the gateway cannot read is refused with a clear `400`, and
/// nothing reaches the provider: what cannot be read cannot be billed.
#[test]
fn unreadable_bodies_on_billable_paths_get_400_and_reach_nobody() {
    let gw = start(10_000_000, 60_000);
    for (path, body, why) in [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","stream":"#,
            "not valid JSON",
        ),
        ("/v1/chat/completions", "", "empty"),
        ("/v1/messages", "  \n", "empty"),
        ("/v1/responses", "[1,2]", "not a JSON object"),
        ("/v1/messages?beta=true", "model=claude", "not valid JSON"),
        (
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "{\"contents\":",
            "not valid JSON",
        ),
    ] {
        let r = post(&gw, "k1", path, body);
        assert_eq!(r.status, 400, "{path} {body:?}: {}", r.text());
        assert!(r.text().contains(why), "{path} {body:?}: {}", r.text());
        assert!(r.text().contains("cannot bill"), "{}", r.text());
    }
    assert_eq!(gw.openai.requests().len(), 0);
    assert_eq!(gw._anthropic.requests().len(), 0);
    assert_eq!(gw._gemini.requests().len(), 0);
    // A body is still fine where nothing is billed (here, no cluster answers: 503 from Envoy).
    assert_ne!(post(&gw, "k1", "/v1/files", "not json").status, 400);
}

/// Native Gemini requests name the model in the path and carry none in the body: they reach
/// the Gemini cluster and are billed under the path's model.
#[test]
fn native_gemini_requests_are_routed_and_billed() {
    let gw = start(10_000_000, 60_000);
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let r = post(
        &gw,
        "k1",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        body,
    );
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    assert_eq!(r.body, GEMINI_SSE.as_bytes());
    let g = |model, kind| tokens(&gw, "gemini", model, kind);
    assert!(
        wait_until(Duration::from_secs(5), || g("gemini-2.0-flash", "output")
            == Some(4)),
        "{}",
        gw.envoy.stats()
    );
    assert_eq!(g("gemini-2.0-flash", "input"), Some(11));
    // Any model the Gemini API serves, `:generateContent`, the `v1` API.
    let r = post(&gw, "k2", "/v1/models/gemma-3-27b-it:generateContent", body);
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    assert_eq!(r.body, GEMINI_JSON.as_bytes());
    assert!(
        wait_until(Duration::from_secs(5), || g("gemma-3-27b-it", "input")
            == Some(9)),
        "{}",
        gw.envoy.stats()
    );
    let sent = gw._gemini.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(sent[1].body, body.as_bytes());
}

/// When the gateway asked for usage (absent, `null` or `false` in the request), the provider's
/// usage-only chunk (`choices: []`) is billed and removed from what the client receives; the
/// rest of the stream is byte for byte what the provider sent (cut every 7 bytes). A client
/// that asked for usage itself gets that chunk.
#[test]
fn usage_chunk_added_by_the_gateway_is_billed_but_not_shown() {
    let gw = start(10_000_000, 60_000);
    let cases = [
        (r#"{"model":"gpt-4o","stream":true,"messages":[]}"#, false),
        (
            r#"{"model":"gpt-4o","stream":true,"stream_options":null}"#,
            false,
        ),
        (
            r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false}}"#,
            false,
        ),
        (
            r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
            true,
        ),
    ];
    for (i, (body, asked)) in cases.into_iter().enumerate() {
        let r = post(&gw, "k1", "/v1/chat/completions", body);
        assert_eq!(r.status, 200, "{}", gw.envoy.log());
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            String::from_utf8_lossy(&openai_chat(asked)),
            "{body}"
        );
        let want = 21 * (i as u64 + 1);
        assert!(
            wait_until(Duration::from_secs(5), || tokens(
                &gw, "openai", "gpt-4o", "input"
            ) == Some(want)),
            "{body}: {:?}",
            tokens(&gw, "openai", "gpt-4o", "input")
        );
    }
    assert_eq!(tokens(&gw, "openai", "gpt-4o", "output"), Some(36));
}

/// Compressed answers (gzip, deflate, br, zstd; JSON and SSE, sent in 11-byte pieces) are
/// decoded as they pass and billed exactly, while the client receives the provider's
/// compressed bytes unchanged. Upstream, `accept-encoding` keeps only what the gateway reads.
#[test]
fn compressed_responses_are_billed_and_passed_unchanged() {
    let gw = start(10_000_000, 60_000);
    let a = |model, kind| tokens(&gw, "anthropic", model, kind);
    for (i, coding) in ["gzip", "deflate", "br", "zstd"].into_iter().enumerate() {
        let n = i as u64 + 1;
        let accept = format!("{coding};q=0.9, compress, *;q=0.1");
        let r = post_with(
            &gw,
            "k1",
            "/v1/messages",
            r#"{"model":"claude-sonnet-4"}"#,
            &[("accept-encoding", &accept)],
        );
        assert_eq!(r.status, 200, "{}", gw.envoy.log());
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(
            r.body,
            encode(coding, ANTHROPIC_JSON.as_bytes()),
            "{coding}"
        );
        let sent = gw._anthropic.requests().pop().unwrap();
        assert_eq!(
            sent.header("accept-encoding"),
            Some(format!("{coding};q=0.9").as_str())
        );
        assert!(
            wait_until(Duration::from_secs(5), || a("claude-sonnet-4", "input")
                == Some(40 * n)),
            "{coding}: {:?} {}",
            a("claude-sonnet-4", "input"),
            gw.envoy.stats()
        );
        assert_eq!(a("claude-sonnet-4", "cached_input"), Some(30 * n));
        let r = post_with(
            &gw,
            "k1",
            "/v1/messages",
            r#"{"model":"claude-opus-4","stream":true}"#,
            &[("accept-encoding", coding)],
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, encode(coding, ANTHROPIC_SSE.as_bytes()), "{coding}");
        assert!(
            wait_until(Duration::from_secs(5), || a("claude-opus-4", "output")
                == Some(17 * n)),
            "{coding}: {:?}",
            a("claude-opus-4", "output")
        );
    }
    // A coding the gateway cannot read is not asked for: the answer comes uncompressed.
    let r = post_with(
        &gw,
        "k1",
        "/v1/messages",
        r#"{"model":"claude-sonnet-4"}"#,
        &[("accept-encoding", "x-snappy")],
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        gw._anthropic
            .requests()
            .pop()
            .unwrap()
            .header("accept-encoding"),
        None
    );
    assert!(wait_until(Duration::from_secs(5), || a(
        "claude-sonnet-4",
        "input"
    ) == Some(200)));
    assert_eq!(unbilled(&gw, "unreadable_encoding"), None);
}

/// With `"accept_encoding": "pass"`, a response the gateway cannot read is never silent: it
/// reaches the client unchanged and is counted in `llm_gateway_unbilled` by reason; with
/// `"strip"`, the provider is asked for no coding at all.
#[test]
fn unreadable_responses_are_counted_by_reason() {
    let gw = start_configured(10_000_000, 60_000, None, r#", "accept_encoding": "pass""#);
    let body = r#"{"model":"claude-sonnet-4"}"#;
    let r = post_with(
        &gw,
        "k1",
        "/v1/messages",
        body,
        &[("accept-encoding", "x-snappy")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, encode("x-snappy", ANTHROPIC_JSON.as_bytes()));
    assert_eq!(
        gw._anthropic
            .requests()
            .pop()
            .unwrap()
            .header("accept-encoding"),
        Some("x-snappy")
    );
    assert!(
        wait_until(Duration::from_secs(5), || unbilled(
            &gw,
            "unreadable_encoding"
        ) == Some(1)),
        "{}",
        gw.envoy.stats()
    );
    let r = post_with(
        &gw,
        "k1",
        "/v1/messages",
        body,
        &[("accept-encoding", "gzip"), ("x-fake-corrupt", "1")],
    );
    assert_eq!(r.status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || unbilled(&gw, "corrupt_encoding")
            == Some(1)),
        "{}",
        gw.envoy.stats()
    );
    assert_eq!(tokens(&gw, "anthropic", "claude-sonnet-4", "input"), None);
    // Readable codings pass through `pass` too, and are billed.
    let r = post_with(
        &gw,
        "k1",
        "/v1/messages",
        body,
        &[("accept-encoding", "br")],
    );
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(wait_until(Duration::from_secs(5), || tokens(
        &gw,
        "anthropic",
        "claude-sonnet-4",
        "input"
    ) == Some(40)));

    let gw = start_configured(10_000_000, 60_000, None, r#", "accept_encoding": "strip""#);
    let r = post_with(
        &gw,
        "k1",
        "/v1/messages",
        body,
        &[("accept-encoding", "gzip, br")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, ANTHROPIC_JSON.as_bytes());
    assert_eq!(
        gw._anthropic
            .requests()
            .pop()
            .unwrap()
            .header("accept-encoding"),
        None
    );
}

/// Envoy's OpenTelemetry stat sink, flushing every 500 ms to the cluster `otlp`.
const OTLP_SINK: &str = r#"stats_flush_interval: 0.5s
stats_sinks:
- name: envoy.stat_sinks.open_telemetry
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig
    grpc_service:
      envoy_grpc: { cluster_name: otlp }
"#;

/// The GenAI metrics of the OpenTelemetry semantic conventions reach Envoy's stat sinks: token
/// usage per token type, model, provider and operation as a histogram (the OTLP receiver sees
/// each response's tokens in the right bucket, and their sum within Envoy's binning), and time to first token, time per output token and request duration, one
/// sample per response; the Prometheus endpoint has the same series.
#[test]
fn genai_metrics_reach_the_otel_sink_and_prometheus() {
    let otlp = OtlpReceiver::start();
    let port = otlp.port();
    let gw = start_full(10_000_000, 60_000, None, "", |c| {
        c.cluster(Cluster::new("otlp", port).http2())
            .raw_top_level(OTLP_SINK)
    });
    let r = post(
        &gw,
        "k1",
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","stream":true}"#,
    );
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    let r = post(
        &gw,
        "k1",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        r#"{"contents":[]}"#,
    );
    assert_eq!(r.status, 200);
    let wait = Duration::from_secs(10);
    let tokens_hist = "dynamicmodulescustom.gen_ai_client_token_usage";
    for (op, provider, model, kind, sum) in [
        ("chat", "openai", "gpt-4o", "input", 21),
        ("chat", "openai", "gpt-4o", "output", 9),
        (
            "generate_content",
            "gcp.gemini",
            "gemini-2.5-flash",
            "input",
            11,
        ),
        (
            "generate_content",
            "gcp.gemini",
            "gemini-2.5-flash",
            "output",
            4,
        ),
    ] {
        let attrs = [
            ("gen_ai_operation_name", op),
            ("gen_ai_provider_name", provider),
            ("gen_ai_request_model", model),
            ("gen_ai_token_type", kind),
        ];
        let p = otlp
            .wait_for(tokens_hist, &attrs, wait)
            .unwrap_or_else(|| panic!("no {tokens_hist}{attrs:?} in {:#?}", otlp.points()));
        assert_eq!(p["kind"], "histogram", "{p}");
        assert_eq!(p["count"], 1, "{p}");
        // Envoy keeps histograms as approximate bins: the sum is close, the bucket exact.
        let got = p["sum"].as_f64().expect("a sum");
        assert!((got - sum as f64).abs() <= sum as f64 * 0.05, "{p}");
        let bounds: Vec<f64> = p["explicit_bounds"]
            .as_array()
            .expect("bounds")
            .iter()
            .map(|b| b.as_f64().expect("a bound"))
            .collect();
        let bucket = bounds
            .iter()
            .position(|b| sum as f64 <= *b)
            .expect("a bucket");
        assert_eq!(p["bucket_counts"][bucket], 1, "{p}");
    }
    for name in [
        "gen_ai_server_time_to_first_token_ms",
        "gen_ai_server_time_per_output_token_us",
        "gen_ai_server_request_duration_ms",
    ] {
        let full = format!("dynamicmodulescustom.{name}");
        for (op, provider, model) in [
            ("chat", "openai", "gpt-4o"),
            ("generate_content", "gcp.gemini", "gemini-2.5-flash"),
        ] {
            let attrs = [
                ("gen_ai_operation_name", op),
                ("gen_ai_provider_name", provider),
                ("gen_ai_request_model", model),
            ];
            let p = otlp
                .wait_for(&full, &attrs, wait)
                .unwrap_or_else(|| panic!("no {full}{attrs:?} in {:#?}", otlp.points()));
            assert_eq!(p["kind"], "histogram", "{p}");
            assert_eq!(p["count"], 1, "{p}");
        }
    }
    // The same series, parsed from the Prometheus endpoint.
    let count = "envoy_dynamicmodulescustom_gen_ai_client_token_usage_count";
    let text = gw.envoy.admin_get("/stats/prometheus").text();
    let samples = parse_prometheus(&text);
    let input = samples
        .iter()
        .find(|s| {
            s.name == count
                && s.labels.get("gen_ai_token_type").map(String::as_str) == Some("input")
                && s.labels.get("gen_ai_provider_name").map(String::as_str) == Some("openai")
        })
        .unwrap_or_else(|| panic!("no {count} in\n{text}"));
    assert_eq!(input.kind, "histogram");
    assert_eq!(input.value, 1.0);
    let sum = samples
        .iter()
        .find(|s| {
            s.name == "envoy_dynamicmodulescustom_gen_ai_client_token_usage_sum"
                && s.labels == input.labels
        })
        .unwrap_or_else(|| panic!("no sum in\n{text}"));
    assert!((sum.value - 21.0).abs() <= 21.0 * 0.05, "{text}");
}

/// With `provider_keys`, each provider's key comes from an SDS generic secret in a watched file
/// and replaces the client's key, in the header that provider expects; the client never sees
/// it and the provider never sees the gateway key. Rewriting a file rotates the key without a
/// restart (Envoy 1.40; older Envoys refuse the config, naming the secret).
#[test]
fn provider_keys_from_sds_replace_the_clients_key_and_rotate() {
    let dir = std::env::temp_dir().join(format!("jisr-e2e-gw-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |p: &str| dir.join(format!("{p}.yaml"));
    jisr_e2e::write_generic_secret(&file("openai"), "openai-key", "sk-openai-1");
    jisr_e2e::write_generic_secret(&file("anthropic"), "anthropic-key", "sk-ant-1\n");
    jisr_e2e::write_generic_secret(&file("gemini"), "gemini-key", "AIza-1");
    let extra = format!(
        r#", "provider_keys": {{"openai": {{"name": "openai-key", "path": "{}"}}, "anthropic": {{"name": "anthropic-key", "path": "{}"}}, "gemini": {{"name": "gemini-key", "path": "{}"}}}}"#,
        file("openai").display(),
        file("anthropic").display(),
        file("gemini").display()
    );
    if jisr_e2e::envoy_minor() < (1, 40) {
        let (status, log) = Envoy::start_expect_failure(
            &EnvoyConfig::new()
                .listener(
                    Listener::new("gw")
                        .filter(module_filter(
                            "llm_gateway",
                            "llm_gateway",
                            Some(&format!(r#"{{"keys": ["k1"]{extra}}}"#)),
                        ))
                        .route(Route::cluster_header("/", "x-cluster")),
                )
                .node_identity(),
        );
        assert!(!status.success());
        assert!(
            log.contains("jisr: filter 'llm_gateway' rejected its config: secret '"),
            "{log}"
        );
        return;
    }
    let gw = start_full(10_000_000, 60_000, None, &extra, |c| c.node_identity());
    let leaks = |r: &client::Response| {
        let text = format!("{:?} {}", r.headers, r.text());
        ["sk-", "AIza"].iter().any(|k| text.contains(k))
    };
    let r = post_with(
        &gw,
        "k1",
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","stream":false}"#,
        &[("authorization", "Bearer client-token")],
    );
    assert_eq!(r.status, 200, "{}", gw.envoy.log());
    assert!(!leaks(&r));
    let sent = gw.openai.requests().pop().unwrap();
    assert_eq!(sent.header("authorization"), Some("Bearer sk-openai-1"));
    assert_eq!(sent.header("x-api-key"), None);
    let r = post(&gw, "k2", "/v1/messages", r#"{"model":"claude-sonnet-4"}"#);
    assert_eq!(r.status, 200);
    assert!(!leaks(&r));
    let sent = gw._anthropic.requests().pop().unwrap();
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-1"));
    assert_eq!(sent.header("authorization"), None);
    let r = post(
        &gw,
        "k2",
        "/v1beta/models/gemini-2.5-pro:generateContent",
        r#"{"contents":[]}"#,
    );
    assert_eq!(r.status, 200);
    let sent = gw._gemini.requests().pop().unwrap();
    assert_eq!(sent.header("x-goog-api-key"), Some("AIza-1"));
    assert_eq!(sent.header("x-api-key"), None);
    // Rotation: the next requests carry the new key.
    jisr_e2e::write_generic_secret(&file("openai"), "openai-key", "sk-openai-2");
    assert!(
        wait_until(Duration::from_secs(10), || {
            post(
                &gw,
                "k1",
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","stream":false}"#,
            );
            gw.openai.requests().pop().unwrap().header("authorization")
                == Some("Bearer sk-openai-2")
        }),
        "rotation not seen: {}",
        gw.envoy.log()
    );
    // The gateway's own check still uses the client's key.
    assert_eq!(post(&gw, "nope", "/v1/messages", "{}").status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}
