use super::*;

/// Chat Completions with `stream_options: {"include_usage": true}`.
pub(crate) const OPENAI_CHAT: &str = concat!(
    r#"data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_5a1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_5a1","choices":[{"index":0,"delta":{"content":"The \"usage\": {\"prompt_tokens\": 999}"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_5a1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_5a1","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// Responses API streaming.
pub(crate) const OPENAI_RESPONSES: &str = concat!(
    "event: response.created\n",
    r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_68a","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_68a","output_index":0,"content_index":0,"delta":"Hi there"}"#,
    "\n\n",
    "event: response.output_text.done\n",
    r#"data: {"type":"response.output_text.done","sequence_number":5,"item_id":"msg_68a","output_index":0,"content_index":0,"text":"Hi there"}"#,
    "\n\n",
    "event: response.completed\n",
    r#"data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_68a","object":"response","created_at":1741290958,"status":"completed","error":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_68a","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there","annotations":[],"usage":{"input_tokens":1}}]}],"tools":[],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48},"user":null,"metadata":{}}}"#,
    "\n\n",
);

/// Anthropic Messages streaming.
pub(crate) const ANTHROPIC: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_01Xf","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"{\"usage\":{\"output_tokens\":5000}}"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

fn usage(input_tokens: u64, output_tokens: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens,
        output_tokens,
    })
}

fn track(input: &[u8], chunk: usize) -> UsageTracker {
    let mut t = UsageTracker::new();
    for c in input.chunks(chunk.max(1)) {
        t.feed(c);
    }
    t
}

fn cases() -> [(&'static str, Provider, Option<Usage>); 3] {
    [
        (OPENAI_CHAT, Provider::OpenAi, usage(19, 10)),
        (OPENAI_RESPONSES, Provider::OpenAi, usage(37, 11)),
        (ANTHROPIC, Provider::Anthropic, usage(472, 15)),
    ]
}

#[test]
fn providers_and_usage_whatever_the_chunking() {
    for (stream, provider, expected) in cases() {
        for chunk in [1, 2, 3, 7, 64, 1000, usize::MAX] {
            let t = track(stream.as_bytes(), chunk.min(stream.len()));
            assert_eq!(t.provider(), provider, "chunk {chunk}");
            assert_eq!(t.usage(), expected, "chunk {chunk}");
        }
        let crlf = stream.replace('\n', "\r\n");
        assert_eq!(track(crlf.as_bytes(), 5).usage(), expected);
    }
}

#[test]
fn no_usage_until_reported() {
    let cut = OPENAI_CHAT.find("data: {\"id\":\"chatcmpl-Bx1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_5a1\",\"choices\":[],").unwrap();
    let t = track(&OPENAI_CHAT.as_bytes()[..cut], 9);
    assert_eq!((t.provider(), t.usage()), (Provider::OpenAi, None));
    assert_eq!(UsageTracker::new().provider(), Provider::Unknown);
    let t = track(b"data: hello\n\nevent: other\ndata: {}\n\n", 3);
    assert_eq!((t.provider(), t.usage()), (Provider::Unknown, None));
}

#[test]
fn anthropic_later_deltas_win_and_may_carry_input() {
    let mut t = UsageTracker::new();
    t.feed(ANTHROPIC.as_bytes());
    t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":500,\"output_tokens\":20,\"cache_read_input_tokens\":0}}\n\n");
    assert_eq!(t.usage(), usage(500, 20));
    t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":21}}\n\n");
    assert_eq!(t.usage(), usage(500, 21));
}

#[test]
fn type_inside_json_when_event_lines_are_missing() {
    let stream: String = ANTHROPIC
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let t = track(stream.as_bytes(), 11);
    assert_eq!(
        (t.provider(), t.usage()),
        (Provider::Anthropic, usage(472, 15))
    );
}

#[test]
fn reset_forgets() {
    let mut t = track(ANTHROPIC.as_bytes(), 100);
    t.reset();
    assert_eq!((t.provider(), t.usage()), (Provider::Unknown, None));
    t.feed(OPENAI_CHAT.as_bytes());
    assert_eq!(t.usage(), usage(19, 10));
}

/// A long stream: the start event, many deltas, the final events.
fn long_stream(stream: &str, filler: &str, copies: usize) -> Vec<u8> {
    let first_end = stream.find("\n\n").unwrap() + 2;
    let mut out = stream.as_bytes()[..first_end].to_vec();
    for _ in 0..copies {
        out.extend_from_slice(filler.as_bytes());
    }
    out.extend_from_slice(&stream.as_bytes()[first_end..]);
    out
}

#[test]
fn head_tail_captures() {
    let fillers = [
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"}}],\"usage\":null}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"word \"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"word \"}}\n\n",
    ];
    let mut tracker = UsageTracker::new();
    for ((stream, provider, expected), filler) in cases().into_iter().zip(fillers) {
        let body = long_stream(stream, filler, 200);
        // Big enough for the first and the last events.
        let mut cap = HeadTail::new(1024, 2048);
        for c in body.chunks(97) {
            cap.write(c);
        }
        assert!(cap.dropped() > 0);
        assert_eq!(tracker.scan_head_tail(&cap), expected);
        assert_eq!(tracker.provider(), provider);

        // Whatever the sizes, a capture never yields a wrong number: the input count is the
        // true one or (when its event was dropped) absent.
        let want = expected.unwrap();
        for h in (0..1200).step_by(37) {
            for t in (0..2400).step_by(53) {
                let mut cap = HeadTail::new(h, t);
                cap.write(&body);
                if let Some(got) = tracker.scan_head_tail(&cap) {
                    assert!(got.input_tokens == want.input_tokens || got.input_tokens == 0);
                    // Output counts are cumulative: an early one may be all that survived.
                    assert!(got.output_tokens <= want.output_tokens);
                }
                if cap.is_complete() {
                    assert_eq!(tracker.usage(), expected, "complete capture {h} {t}");
                }
            }
        }
    }
}

#[test]
fn oversized_final_event_loses_only_its_own_counts() {
    // response.completed is ~900 bytes: with 512 bytes of data capacity it is cut before
    // `usage`, so the counts are unknown, never wrong; a bigger capacity finds them.
    let mut small = UsageTracker::with_capacity(64, 512);
    small.feed(OPENAI_RESPONSES.as_bytes());
    assert_eq!((small.provider(), small.usage()), (Provider::OpenAi, None));
    let mut big = UsageTracker::with_capacity(64, 1024);
    big.feed(OPENAI_RESPONSES.as_bytes());
    assert_eq!(big.usage(), usage(37, 11));
    // A cut message_start loses the input count; the later message_delta still counts.
    let mut small = UsageTracker::with_capacity(64, 200);
    small.feed(ANTHROPIC.as_bytes());
    assert_eq!(small.usage(), usage(0, 15));
}
