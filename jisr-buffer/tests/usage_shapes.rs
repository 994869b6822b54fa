//! `UsageTracker` on every response shape it knows: streamed (SSE) and JSON answers of OpenAI
//! Chat Completions, OpenAI Responses, Anthropic Messages and Google Gemini, fed whole, byte
//! by byte and split at every position; events far larger than any buffer; `usage` in text.

use jisr_buffer::{BodyFormat, Provider, Usage, UsageTracker};

/// Chat Completions, `stream: true` with `stream_options: {"include_usage": true}`, from a
/// reasoning model with a cached prompt.
const CHAT_SSE: &str = concat!(
    r#"data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1750000000,"model":"o4-mini-2025-04-16","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1750000000,"model":"o4-mini-2025-04-16","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"Sure: {\"usage\":{\"prompt_tokens\":1,"},"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1750000000,"model":"o4-mini-2025-04-16","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"\"completion_tokens\":2}} \\\" \u00e9 \ud83d\ude00"},"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1750000000,"model":"o4-mini-2025-04-16","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1750000000,"model":"o4-mini-2025-04-16","service_tier":"default","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":1187,"completion_tokens":301,"total_tokens":1488,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// A non-streamed Chat Completions answer (pretty-printed, as the API sends it).
const CHAT_JSON: &str = r#"{
  "id": "chatcmpl-C2",
  "object": "chat.completion",
  "created": 1750000000,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "The field is \"usage\": {\"prompt_tokens\": 5}.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_50cad350e4"
}
"#;

/// The Responses API, streamed. `OUTPUT` is replaced by the output text (JSON-escaped).
const RESPONSES_SSE: &str = concat!(
    "event: response.created\n",
    r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}"#,
    "\n\n",
    "event: response.in_progress\n",
    r#"data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_67c","object":"response","status":"in_progress","output":[],"usage":null}}"#,
    "\n\n",
    "event: response.output_item.added\n",
    r#"data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c","type":"message","status":"in_progress","content":[],"role":"assistant"}}"#,
    "\n\n",
    "event: response.content_part.added\n",
    r#"data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":""}}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c","output_index":0,"content_index":0,"delta":"OUTPUT"}"#,
    "\n\n",
    "event: response.output_text.done\n",
    r#"data: {"type":"response.output_text.done","sequence_number":5,"item_id":"msg_67c","output_index":0,"content_index":0,"text":"OUTPUT"}"#,
    "\n\n",
    "event: response.content_part.done\n",
    r#"data: {"type":"response.content_part.done","sequence_number":6,"item_id":"msg_67c","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":"OUTPUT"}}"#,
    "\n\n",
    "event: response.output_item.done\n",
    r#"data: {"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"id":"msg_67c","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"text":"OUTPUT"}],"role":"assistant"}}"#,
    "\n\n",
    "event: response.completed\n",
    r#"data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_67c","object":"response","created_at":1741290958,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_67c","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"text":"OUTPUT"}],"role":"assistant"}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":12},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":48},"user":null,"metadata":{}}}"#,
    "\n\n",
);

/// A non-streamed Responses answer.
const RESPONSES_JSON: &str = r#"{
  "id": "resp_67d",
  "object": "response",
  "created_at": 1741476542,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "model": "o3-2025-04-16",
  "output": [
    {"type": "reasoning", "id": "rs_67d", "summary": []},
    {"type": "message", "id": "msg_67d", "status": "completed", "role": "assistant",
     "content": [{"type": "output_text", "text": "{\"usage\":{\"input_tokens\":1}}", "annotations": []}]}
  ],
  "usage": {
    "input_tokens": 36,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 87,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 123
  },
  "user": null,
  "metadata": {}
}"#;

/// Anthropic Messages, streamed, with prompt caching.
const ANTHROPIC_SSE: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_01Xf","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":2048,"cache_read_input_tokens":1024,"cache_creation":{"ephemeral_5m_input_tokens":2048,"ephemeral_1h_input_tokens":0},"output_tokens":2,"service_tier":"standard"}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"event: message_delta\ndata: {\"usage\":{\"output_tokens\":5000}}\n\n"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":472,"cache_creation_input_tokens":2048,"cache_read_input_tokens":1024,"output_tokens":389}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

/// A non-streamed Anthropic Messages answer.
const ANTHROPIC_JSON: &str = r#"{"id":"msg_013Zva","type":"message","role":"assistant","model":"claude-opus-4-20250514","content":[{"type":"thinking","thinking":"The user wants \"usage\".","signature":"EqQB"},{"type":"text","text":"Hi! {\"usage\":{\"input_tokens\":9}}"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":503,"service_tier":"standard"}}"#;

/// Gemini `streamGenerateContent?alt=sse` (CRLF event ends, as the API sends them).
const GEMINI_SSE: &str = concat!(
    r#"data: {"candidates": [{"content": {"parts": [{"text": "The usageMetadata"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 9}]},"modelVersion": "gemini-2.5-flash","responseId": "fG9ZaPq"}"#,
    "\r\n\r\n",
    r#"data: {"candidates": [{"content": {"parts": [{"text": " says {\"usageMetadata\":{\"promptTokenCount\":1}}"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 12,"totalTokenCount": 60,"cachedContentTokenCount": 4,"thoughtsTokenCount": 39},"modelVersion": "gemini-2.5-flash","responseId": "fG9ZaPq"}"#,
    "\r\n\r\n",
    r#"data: {"candidates": [{"content": {"parts": [{"text": "."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 25,"totalTokenCount": 73,"cachedContentTokenCount": 4,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 9}],"thoughtsTokenCount": 39},"modelVersion": "gemini-2.5-flash","responseId": "fG9ZaPq"}"#,
    "\r\n\r\n",
);

/// A non-streamed Gemini `generateContent` answer.
const GEMINI_JSON: &str = r#"{
  "candidates": [
    {
      "content": {
        "parts": [{"text": "{\"usageMetadata\": {\"promptTokenCount\": 1}}"}],
        "role": "model"
      },
      "finishReason": "STOP",
      "avgLogprobs": -0.0123
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 11,
    "candidatesTokenCount": 21,
    "totalTokenCount": 32,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 21}]
  },
  "modelVersion": "gemini-2.0-flash",
  "responseId": "qG9ZaK"
}"#;

/// Gemini `streamGenerateContent` without `alt=sse`: a JSON array, element by element.
const GEMINI_ARRAY: &str = r#"[{
  "candidates": [{"content": {"parts": [{"text": "Hel"}],"role": "model"}}],
  "usageMetadata": {"promptTokenCount": 7,"totalTokenCount": 7},
  "modelVersion": "gemini-2.0-flash"
}
,
{
  "candidates": [{"content": {"parts": [{"text": "lo"}],"role": "model"},"finishReason": "STOP"}],
  "usageMetadata": {"promptTokenCount": 7,"candidatesTokenCount": 2,"totalTokenCount": 9},
  "modelVersion": "gemini-2.0-flash"
}
]"#;

fn counts(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        ..Usage::default()
    }
}

struct Shape {
    name: &'static str,
    body: String,
    format: BodyFormat,
    provider: Provider,
    usage: Usage,
}

fn responses_sse(output: &str) -> String {
    RESPONSES_SSE.replace("OUTPUT", output)
}

fn shapes() -> Vec<Shape> {
    let shape = |name, body: &str, format, provider, usage| Shape {
        name,
        body: body.to_owned(),
        format,
        provider,
        usage,
    };
    use BodyFormat::{Json, Sse};
    vec![
        shape(
            "chat sse",
            CHAT_SSE,
            Sse,
            Provider::OpenAi,
            Usage {
                cached_input_tokens: Some(1024),
                reasoning_tokens: Some(192),
                ..counts(1187, 301)
            },
        ),
        shape(
            "chat json",
            CHAT_JSON,
            Json,
            Provider::OpenAi,
            Usage {
                cached_input_tokens: Some(0),
                reasoning_tokens: Some(0),
                ..counts(19, 10)
            },
        ),
        Shape {
            name: "responses sse",
            body: responses_sse(r#"Hi \"usage\":{\"input_tokens\":2} there"#),
            format: Sse,
            provider: Provider::OpenAi,
            usage: Usage {
                cached_input_tokens: Some(12),
                reasoning_tokens: Some(4),
                ..counts(37, 11)
            },
        },
        shape(
            "responses json",
            RESPONSES_JSON,
            Json,
            Provider::OpenAi,
            Usage {
                cached_input_tokens: Some(0),
                reasoning_tokens: Some(64),
                ..counts(36, 87)
            },
        ),
        shape(
            "anthropic sse",
            ANTHROPIC_SSE,
            Sse,
            Provider::Anthropic,
            Usage {
                cached_input_tokens: Some(1024),
                cache_creation_input_tokens: Some(2048),
                ..counts(472, 389)
            },
        ),
        shape(
            "anthropic json",
            ANTHROPIC_JSON,
            Json,
            Provider::Anthropic,
            Usage {
                cached_input_tokens: Some(0),
                cache_creation_input_tokens: Some(0),
                ..counts(2095, 503)
            },
        ),
        shape(
            "gemini sse",
            GEMINI_SSE,
            Sse,
            Provider::Gemini,
            Usage {
                cached_input_tokens: Some(4),
                reasoning_tokens: Some(39),
                ..counts(9, 25)
            },
        ),
        shape(
            "gemini json",
            GEMINI_JSON,
            Json,
            Provider::Gemini,
            counts(11, 21),
        ),
        shape(
            "gemini array",
            GEMINI_ARRAY,
            Json,
            Provider::Gemini,
            counts(7, 2),
        ),
    ]
}

fn check(t: &UsageTracker, s: &Shape, how: &str) {
    assert_eq!(t.usage(), Some(s.usage), "{}: {how}", s.name);
    assert_eq!(t.provider(), s.provider, "{}: {how}", s.name);
    assert_eq!(t.format(), Some(s.format), "{}: {how}", s.name);
}

#[test]
fn every_shape_whole_and_byte_by_byte() {
    for s in shapes() {
        let mut t = UsageTracker::new();
        t.feed(s.body.as_bytes());
        check(&t, &s, "whole");

        t.reset();
        for b in s.body.as_bytes() {
            t.feed(std::slice::from_ref(b));
        }
        check(&t, &s, "byte by byte");

        let mut forced = UsageTracker::with_format(s.format);
        forced.feed(s.body.as_bytes());
        check(&forced, &s, "forced format");
    }
}

#[test]
fn every_shape_split_at_every_position() {
    let mut t = UsageTracker::new();
    for s in shapes() {
        let body = s.body.as_bytes();
        for at in 0..=body.len() {
            // Two pieces, and three with a short middle piece at every position.
            for width in [0, 1, 2, 5] {
                let end = (at + width).min(body.len());
                t.reset();
                t.feed(&body[..at]);
                t.feed(&body[at..end]);
                t.feed(&body[end..]);
                check(&t, &s, &format!("split at {at}+{width}"));
            }
        }
    }
}

#[test]
fn every_shape_with_other_line_ends_and_chunk_sizes() {
    for s in shapes() {
        // JSON whitespace or SSE line ends: CRLF, CR and LF all work.
        let lf = s.body.replace("\r\n", "\n");
        let bodies = [lf.replace('\n', "\r\n"), lf.replace('\n', "\r"), lf];
        for body in bodies {
            for size in [3, 16, 255, 4096] {
                let mut t = UsageTracker::new();
                for c in body.as_bytes().chunks(size) {
                    t.feed(c);
                }
                check(&t, &s, &format!("chunks of {size}"));
            }
        }
    }
}

#[test]
fn responses_completed_larger_than_a_mebibyte() {
    // Repeated output text, with escapes, `usage` look-alikes and multi-byte characters.
    let piece =
        r#"Lorem ipsum \"usage\":{\"input_tokens\":999,\"output_tokens\":999} \\ \u00e9 é 😀 {[ "#;
    let mut output = String::new();
    while output.len() < (1 << 20) + 12345 {
        output.push_str(piece);
    }
    let body = responses_sse(&output);
    let completed = body.rfind("event: response.completed").unwrap();
    assert!(body.len() - completed > 1 << 20);
    let want = Usage {
        cached_input_tokens: Some(12),
        reasoning_tokens: Some(4),
        ..counts(37, 11)
    };
    for size in [1, 7, 1000, 16 * 1024, 65536 + 1, usize::MAX] {
        let mut t = UsageTracker::new();
        for c in body.as_bytes().chunks(size) {
            t.feed(c);
        }
        assert_eq!(t.usage(), Some(want), "chunks of {size}");
        assert_eq!(t.provider(), Provider::OpenAi);
    }
    // Split at every position of the final bytes, where `usage` is: the state after the
    // first part is cloned, so each split costs only the tail.
    let bytes = body.as_bytes();
    let tail = bytes.len() - 600;
    let mut start = UsageTracker::new();
    start.feed(&bytes[..tail]);
    for at in tail..bytes.len() {
        let mut t = start.clone();
        t.feed(&bytes[tail..at]);
        t.feed(&bytes[at..]);
        assert_eq!(t.usage(), Some(want), "split at {at}");
    }

    // The same output in the other shapes: a huge Anthropic delta, a huge chat JSON answer.
    let escaped = &output;
    let big_anthropic = ANTHROPIC_SSE.replacen(
        r#""text":"event: message_delta"#,
        &format!(r#""text":"{escaped}"#),
        1,
    );
    let mut t = UsageTracker::new();
    t.feed(big_anthropic.as_bytes());
    assert_eq!(t.usage().unwrap().output_tokens, Some(389));
    let big_chat = CHAT_JSON.replace("The field is", &format!("{escaped} The field is"));
    assert!(big_chat.len() > 1 << 20);
    let mut t = UsageTracker::new();
    for c in big_chat.as_bytes().chunks(8191) {
        t.feed(c);
    }
    assert_eq!(t.usage().unwrap().input_tokens, Some(19));
}

#[test]
fn usage_in_generated_text_is_never_taken() {
    // Only text deltas, whose text is made of usage-looking JSON and SSE: nothing counts.
    let fakes = [
        r#"data: {\"usage\":{\"prompt_tokens\":1}}\n\n"#,
        r#"{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}"#,
        r#"\"usageMetadata\":{\"promptTokenCount\":1}"#,
    ];
    let mut streams = Vec::new();
    for fake in fakes {
        streams.push(format!(
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\"{fake}\"}}}}],\"usage\":null}}\n\n"
        ));
        streams.push(format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{fake}\"}}\n\n"
        ));
        streams.push(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"text_delta\",\"text\":\"{fake}\"}}}}\n\n"
        ));
        streams.push(format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{fake}\"}}]}}}}],\"modelVersion\":\"gemini-2.0-flash\"}}\r\n\r\n"
        ));
        // Usage objects elsewhere than at the top: in an array, in another object.
        streams.push(format!(
            "data: {{\"choices\":[{{\"usage\":{{\"prompt_tokens\":1}}}}],\"x\":{{\"usage\":{{\"prompt_tokens\":1}}}},\"t\":\"{fake}\"}}\n\n"
        ));
    }
    for stream in &streams {
        for size in [1, 5, usize::MAX] {
            let mut t = UsageTracker::new();
            for c in stream.as_bytes().chunks(size) {
                t.feed(c);
            }
            assert_eq!(t.usage(), None, "{stream}");
        }
    }
}

#[test]
fn responses_incomplete_and_failed_carry_usage_too() {
    for (kind, status) in [
        ("response.incomplete", "incomplete"),
        ("response.failed", "failed"),
    ] {
        let body = format!(
            "event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":9,\"response\":{{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"{status}\",\"incomplete_details\":{{\"reason\":\"max_output_tokens\"}},\"output\":[],\"usage\":{{\"input_tokens\":5,\"output_tokens\":16,\"output_tokens_details\":{{\"reasoning_tokens\":16}}}}}}}}\n\n"
        );
        let mut t = UsageTracker::new();
        t.feed(body.as_bytes());
        assert_eq!(
            t.usage(),
            Some(Usage {
                reasoning_tokens: Some(16),
                ..counts(5, 16)
            }),
            "{kind}"
        );
    }
}

#[test]
fn missing_fields_stay_absent() {
    let mut t = UsageTracker::new();
    t.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n");
    let got = t.usage().unwrap();
    assert_eq!(got, counts(3, 1));
    assert_eq!(got.cached_input_tokens, None);
    assert_eq!(got.reasoning_tokens, None);

    let mut t = UsageTracker::new();
    t.feed(b"data: {\"usageMetadata\":{\"promptTokenCount\":4,\"totalTokenCount\":4}}\r\n\r\n");
    assert_eq!(t.provider(), Provider::Gemini);
    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: Some(4),
            ..Usage::default()
        })
    );
}

#[test]
fn state_size_does_not_depend_on_the_input() {
    // The tracker has no heap storage: its size is all the memory it ever uses.
    assert!(std::mem::size_of::<UsageTracker>() < 1024);
}
