//! `llm_gateway`: an LLM API gateway that bills right.
//!
//! Filter `llm_gateway` (response mode [`ResponseMode::Observe`]), `filter_config` JSON:
//! `{"keys": ["k1", ...], "budget_tokens": 100000, "window_ms": 60000, "max_body": 1048576,
//! "default_output_tokens": 1024, "input_bytes_per_token": 4, "accept_encoding": "readable",
//! "max_decode_window": 8388608}`.
//!
//! - **Auth.** `x-api-key` must be one of `keys` (else `401`, details `llm_gateway_unknown_key`).
//! - **Budget.** Each key may spend `budget_tokens` per `window_ms`, shared by every worker of
//!   the process ([`Budgets`]). A request is admitted by reservation: once its body is read,
//!   the gateway reserves an estimate of what it may use, and admits it only if what the key
//!   used and reserved in the window plus that estimate fits the budget; else `429` with
//!   `retry-after` (seconds to the next window, rounded up; details `llm_gateway_budget`). A
//!   key with nothing left is refused before its body is read.
//!   - *The estimate*: input, the request body's bytes divided by `input_bytes_per_token`
//!     (default 4: an upper estimate for most text, since the JSON around the prompt counts
//!     too); output, the request's `max_completion_tokens`, `max_tokens`, `max_output_tokens`
//!     or Gemini's `generationConfig.maxOutputTokens`, times `n` when it asks for several
//!     choices, else `default_output_tokens` (default 1024); embeddings, none. An estimate
//!     over the whole budget counts as the whole budget: such a request runs only when the
//!     key used nothing in the window.
//!   - *Settled* when the response ends (streamed or not, also when the upstream cut it
//!     short) to the usage it reported: the reservation is replaced by the real input +
//!     output tokens. *Released* (nothing charged) when the request is refused after
//!     admission, the response reports no usage (an error status, `llm_gateway_unbilled`), or
//!     the client leaves before the response ended (the handler is dropped, and the
//!     reservation with it).
//!   - *Overshoot*: a response that uses more than its reservation is charged all of it, so
//!     a key overshoots only by what its requests in flight use beyond their estimates
//!     (counter `llm_gateway_reservation_overrun_tokens` sums it). With provider-enforced
//!     maxima in every request, input is what the estimate may miss; for requests without
//!     one, set `default_output_tokens` near what they really generate (over it for a hard
//!     bound, under it for more concurrency). A request that spans two windows has its
//!     reservation counted in the window it started in, and its usage in the one it ends in.
//! - **Request rewrite.** The JSON body is read whole (at most `max_body` bytes, else `413`,
//!   details `llm_gateway_body_too_large`). A streaming OpenAI Chat Completions (or legacy
//!   Completions) request (`"stream": true`) that does not ask for usage (`stream_options`
//!   absent or `null`, or `include_usage` absent or `false`) gets
//!   `stream_options.include_usage: true`, so its usage can be billed; `content-length` is
//!   kept right. Only those two APIs define the field: a Responses request (`/v1/responses`,
//!   usage always in `response.completed`), Anthropic and Gemini requests are never changed.
//!   When the gateway asked for usage the client did not ask for, the provider's usage-only
//!   chunk (`"choices": []` with `usage`) is billed and removed from what the client receives;
//!   every other byte passes unchanged ([`UsageChunkStripper`], each chunk replaced once read
//!   whole with [`Response::replace_chunk`]). A stream sent with a `content-length` (already
//!   downstream) keeps that chunk, since its length cannot change.
//! - **Billable requests.** A `POST` to an API that reports usage is billable: OpenAI
//!   `…/chat/completions`, `…/completions`, `…/responses`, `…/embeddings`, Anthropic
//!   `…/messages`, and native Gemini `…/models/{model}:generateContent` and
//!   `:streamGenerateContent`. Its body must be a JSON object: an empty or malformed body (or
//!   JSON that is not an object) gets `400` (details `llm_gateway_bad_body`) and nothing
//!   reaches the provider, since what cannot be read cannot be billed. Other requests are
//!   forwarded as they are (routed by their body's `model` when it has one).
//! - **Routing.** `model` picks the cluster (`gpt-*`, `o1*`, `o3*`, `o4*` → `openai`,
//!   `claude-*` → `anthropic`, `gemini-*` → `gemini`, else `default`) through request header
//!   `x-cluster` and a cleared route cache (a route with `cluster_header: x-cluster`). A
//!   native Gemini request names its model in the path, not the body: it goes to `gemini`
//!   whatever the model's name, and is billed under that name.
//! - **Usage.** The response (SSE or JSON, any provider, told apart from the body) goes through
//!   a [`UsageTracker`] as it passes. At its end: counter
//!   `llm_gateway_tokens{provider,model,kind}` with `kind` `input`, `output`, `cached_input`,
//!   `cache_creation_input`, `reasoning` (a kind the provider did not report is not counted),
//!   dynamic metadata `llm_gateway:{input_tokens,output_tokens,...}` and
//!   `envoy.ratelimit:hits_addend` (input + output tokens) for access logs. Histogram
//!   `llm_gateway_ttfb_ms{cluster}` takes the time to the first upstream byte from Envoy's own
//!   timing (Envoy 1.40), else the handler's clock.
//!
//!   What is billed, and when (always once, when the response ends or is cut short, from the
//!   last counts it reported; the same for compressed bodies once decoded):
//!
//!   | provider and shape | billed from | if cut short |
//!   |---|---|---|
//!   | OpenAI chat, streamed | the usage-only chunk before `[DONE]` (asked for by the gateway when the client did not) | nothing: `no_usage` |
//!   | OpenAI chat or completions, JSON | top-level `usage` | nothing (the document never closed) |
//!   | OpenAI Responses, streamed | `response.completed` / `.incomplete` / `.failed` | nothing: `no_usage` |
//!   | OpenAI Responses or embeddings, JSON | top-level `usage` | nothing |
//!   | Anthropic, streamed | input and cache counts from `message_start`, output from the last `message_delta` | what was reported: input, and the output of the last delta seen |
//!   | Anthropic, JSON | top-level `usage` | nothing |
//!   | Gemini, streamed (`alt=sse`, or a JSON array) | the last `usageMetadata` | the last chunk seen |
//!   | Gemini, JSON | `usageMetadata` | nothing |
//! - **Compressed responses.** Built with the cargo feature `decompress` (`cargo build
//!   --example llm_gateway --features decompress`), a `gzip`, `deflate`, `br` or `zstd`
//!   response, JSON or SSE, is decoded as it passes (`jisr::buffer::ContentDecoder`, bounded
//!   memory: at most `max_decode_window` bytes of history, default 8 MiB, plus what its docs list per
//!   coding) and billed like any other; the client receives the provider's
//!   compressed bytes unchanged. What the provider may send is set by `accept_encoding`,
//!   applied to billable requests: `"readable"` (default) keeps in the client's
//!   `accept-encoding` only the codings this build reads (none without `decompress`, so the
//!   provider answers uncompressed); `"strip"` removes the header; `"pass"` leaves it. A
//!   request whose usage chunk is to be removed (see above) always goes without it. A 2xx
//!   response that yields no usage is never silent: counter `llm_gateway_unbilled{reason}`
//!   with `reason` `unreadable_encoding` (an unknown or stacked coding, only possible with
//!   `"pass"`), `corrupt_encoding`, `window_too_large` (over `max_decode_window`) or
//!   `no_usage` (the response reported none, e.g. an OpenAI stream that was not asked for
//!   usage, or cut before it).
//! - **GenAI metrics** (OpenTelemetry semantic conventions for generative AI, dots written as
//!   underscores since Envoy stat and tag names cannot hold them; integer histograms, so the
//!   unit is in the name), for each 2xx response that reported usage, labelled
//!   `gen_ai_operation_name` (`chat`, `text_completion`, `embeddings`, `generate_content`),
//!   `gen_ai_provider_name` (`openai`, `anthropic`, `gcp.gemini`) and `gen_ai_request_model`:
//!   histogram `gen_ai_client_token_usage` (tokens per response, with `gen_ai_token_type`
//!   `input` or `output`), `gen_ai_server_time_to_first_token_ms` (request start to the first
//!   response body byte, the handler's clock), `gen_ai_server_time_per_output_token_us` (the
//!   rest of the response divided by the output tokens after the first) and
//!   `gen_ai_server_request_duration_ms`. They reach Envoy's stat sinks like Envoy's own
//!   (OpenTelemetry: labels as attributes; Prometheus: `envoy_dynamicmodulescustom_*`).
//! - **Provider credentials.** With `"provider_keys": {"openai": {"name": "openai-key",
//!   "path": "/etc/envoy/openai.yaml"}, "anthropic": {..}, "gemini": {..}}`, each named
//!   cluster's key is an SDS generic secret in a watched file (Envoy 1.40; older Envoys refuse
//!   the config), read per request, so rewriting the file rotates it without a restart. For
//!   those clusters the client's credential headers (`authorization`, `x-api-key`,
//!   `x-goog-api-key`) are removed and the provider's key is set in the header it expects:
//!   `authorization: Bearer ..` (OpenAI), `x-api-key` (Anthropic), `x-goog-api-key`
//!   (Gemini). Clients never see a provider key, and providers never see a gateway key. While
//!   Envoy has no value for the secret yet, such requests get `503` (details
//!   `llm_gateway_no_provider_key`) instead of going out without credentials.
//! - **Fleet budget.** [`Budgets`] are per process. For a budget shared by a fleet, the
//!   gateway also leaves the total in the filter state `envoy.ratelimit.hits_addend`, which
//!   Envoy's global rate-limit filter sends as the request's `hits_addend` to the rate-limit
//!   service; the budget lives there. Put the rate-limit filter after this one and give the
//!   route a rate limit that runs when the stream is done (e2e-tested on Envoy 1.38–1.40):
//!
//! ```yaml
//! http_filters:
//! - name: llm_gateway            # this filter
//!   # ...
//! - name: envoy.filters.http.ratelimit
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
//!     domain: llm
//!     rate_limit_service:
//!       grpc_service: { envoy_grpc: { cluster_name: rls } }
//!       transport_api_version: V3
//! # and on the route:
//! route:
//!   cluster_header: x-cluster
//!   rate_limits:
//!   - actions:
//!     - request_headers: { header_name: x-api-key, descriptor_key: api_key }
//!     apply_on_stream_done: true   # charged once the response's usage is known
//! ```
//!
//!   A route-level `hits_addend: { format: "%DYNAMIC_METADATA(envoy.ratelimit:hits_addend)%" }`
//!   is not what carries the tokens: Envoy 1.40 sent no hits for it (nor for a fixed
//!   `number`) in this setup; the filter state is what the rate-limit filter reads.

use jisr::buffer::{
    BudgetError, Budgets, DecodeError, Encoding, Provider, Reservation, UsageChunkStripper,
    UsageTracker,
};
use jisr::handler::BodyError;
use jisr::info::TimingPoint;
use jisr::{
    ConfigError, ConfigHandle, Counter, Histogram, Level, Registry, Request, Response,
    ResponseMode, ResponseWriter, Secret,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Gateway {
    keys: Vec<String>,
    budgets: Arc<Budgets>,
    /// Output tokens reserved for a request that names no maximum.
    default_output: u64,
    /// Request body bytes counted as one input token when reserving.
    bytes_per_token: u64,
    /// `llm_gateway_reservation_overrun_tokens`: tokens used beyond the reservations.
    overrun: Counter,
    max_body: usize,
    accept_encoding: AcceptEncoding,
    max_window: u64,
    tokens: Counter,
    unbilled: Counter,
    ttfb: Histogram,
    genai: GenAi,
    /// Per cluster (`openai`, `anthropic`, `gemini`): the provider's key, from an SDS secret.
    provider_keys: Vec<(&'static str, Secret)>,
}

/// The clusters whose provider keys the gateway can set, and the header each expects.
const KEY_HEADERS: [(&str, &str); 3] = [
    ("openai", "authorization"),
    ("anthropic", "x-api-key"),
    ("gemini", "x-goog-api-key"),
];

/// The OpenTelemetry GenAI metrics (semantic conventions for generative AI), recorded for each
/// 2xx response that reported usage. Envoy stat and tag names cannot hold the conventions' dots
/// (Envoy splits names at them, Prometheus forbids them), so each dot is an underscore, the
/// names exporters derive anyway; Envoy histograms take integers, so durations are in
/// milliseconds (microseconds per output token), named with the unit.
struct GenAi {
    /// `gen_ai.client.token.usage`: tokens per response, by `gen_ai.token.type`.
    tokens: Histogram,
    /// `gen_ai.server.time_to_first_token`: request start to the first response body byte.
    first_token_ms: Histogram,
    /// `gen_ai.server.time_per_output_token`: after the first, per output token.
    per_output_token_us: Histogram,
    /// `gen_ai.server.request.duration`: request start to the end of the response.
    duration_ms: Histogram,
}

const GENAI_LABELS: [&str; 3] = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
];

/// What a billable request's `accept-encoding` becomes upstream (`"accept_encoding"`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AcceptEncoding {
    /// `"readable"` (default): only the codings this build can decode are kept (none but
    /// `identity` without the `decompress` feature); the header goes when none is left.
    Readable,
    /// `"strip"`: removed, so the provider answers uncompressed.
    Strip,
    /// `"pass"`: forwarded as it is; a response in a coding the gateway cannot read is
    /// counted in `llm_gateway_unbilled{reason="unreadable_encoding"}`.
    Pass,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Gateway, ConfigError> {
    let v: serde_json::Value = serde_json::from_str(cfg.config_str()?)
        .map_err(|e| ConfigError::new(format!("invalid JSON: {e}")))?;
    let keys: Vec<String> = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("\"keys\" must be an array of strings")?
        .iter()
        .map(|k| k.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or("\"keys\" must be an array of strings")?;
    let num = |k: &str, default: u64| match v.get(k) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::new(format!("\"{k}\" must be a positive integer"))),
    };
    let budget = num("budget_tokens", 100_000)?;
    let window = Duration::from_millis(num("window_ms", 60_000)?);
    let max_body = usize::try_from(num("max_body", 1 << 20)?).unwrap_or(usize::MAX);
    let max_window = num("max_decode_window", 8 << 20)?;
    let default_output = num("default_output_tokens", 1024)?;
    let bytes_per_token = num("input_bytes_per_token", 4)?;
    let mut provider_keys = Vec::new();
    if let Some(keys) = v.get("provider_keys") {
        let keys = keys
            .as_object()
            .ok_or("\"provider_keys\" must be an object")?;
        for (cluster, source) in keys {
            let Some(&(cluster, _)) = KEY_HEADERS.iter().find(|(c, _)| c == cluster) else {
                return Err(ConfigError::new(format!(
                    "\"provider_keys\": unknown provider \"{cluster}\""
                )));
            };
            let field = |k: &str| {
                source.get(k).and_then(|v| v.as_str()).ok_or_else(|| {
                    ConfigError::new(format!(
                        "\"provider_keys\".\"{cluster}\".\"{k}\" must be a string"
                    ))
                })
            };
            let (name, path) = (field("name")?, field("path")?);
            let source = serde_json::json!({
                "path_config_source": { "path": path },
                "resource_api_version": "V3",
            });
            provider_keys.push((cluster, cfg.sds_secret(name, &source.to_string())?));
        }
    }
    let accept_encoding = match v.get("accept_encoding").map(|a| a.as_str()) {
        None | Some(Some("readable")) => AcceptEncoding::Readable,
        Some(Some("strip")) => AcceptEncoding::Strip,
        Some(Some("pass")) => AcceptEncoding::Pass,
        Some(_) => {
            return Err(ConfigError::new(
                "\"accept_encoding\" must be \"readable\", \"strip\" or \"pass\"",
            ));
        }
    };
    Ok(Gateway {
        budgets: Arc::new(Budgets::new(keys.len().max(1) * 4, budget, window)),
        default_output,
        bytes_per_token,
        overrun: cfg.counter("llm_gateway_reservation_overrun_tokens", &[])?,
        keys,
        max_body,
        provider_keys,
        accept_encoding,
        max_window,
        unbilled: cfg.counter("llm_gateway_unbilled", &["reason"])?,
        tokens: cfg.counter("llm_gateway_tokens", &["provider", "model", "kind"])?,
        ttfb: cfg.histogram("llm_gateway_ttfb_ms", &["cluster"])?,
        genai: GenAi {
            tokens: cfg.histogram(
                "gen_ai_client_token_usage",
                &[
                    GENAI_LABELS[0],
                    GENAI_LABELS[1],
                    GENAI_LABELS[2],
                    "gen_ai_token_type",
                ],
            )?,
            first_token_ms: cfg.histogram("gen_ai_server_time_to_first_token_ms", &GENAI_LABELS)?,
            per_output_token_us: cfg
                .histogram("gen_ai_server_time_per_output_token_us", &GENAI_LABELS)?,
            duration_ms: cfg.histogram("gen_ai_server_request_duration_ms", &GENAI_LABELS)?,
        },
    })
}

fn cluster_for(model: &str) -> &'static str {
    if ["gpt-", "o1", "o3", "o4"]
        .iter()
        .any(|p| model.starts_with(p))
    {
        "openai"
    } else if model.starts_with("claude-") {
        "anthropic"
    } else if model.starts_with("gemini-") {
        "gemini"
    } else {
        "default"
    }
}

/// Which API a request path names (the query is ignored).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    /// OpenAI Chat Completions (`/chat/completions`) or legacy Completions (`/completions`):
    /// the only APIs whose `stream_options` has `include_usage`.
    OpenAiChat,
    /// Another API whose JSON body names the model and whose answer reports usage: OpenAI
    /// Responses (`/responses`) and embeddings (`/embeddings`), Anthropic Messages
    /// (`/messages`).
    Json,
    /// Native Gemini (`/{version}/models/{model}:generateContent` or
    /// `:streamGenerateContent`): the path names the model.
    Gemini,
    /// Anything else: not billed, forwarded as it is.
    Other,
}

/// `gen_ai.operation.name` of a request on `path`.
fn operation_of(path: &str, api: Api) -> &'static str {
    let path = path.split('?').next().unwrap_or("");
    match api {
        Api::Gemini => "generate_content",
        _ if path.ends_with("/embeddings") => "embeddings",
        Api::OpenAiChat if !path.ends_with("/chat/completions") => "text_completion",
        _ => "chat",
    }
}

fn api_of(path: &str) -> Api {
    let path = path.split('?').next().unwrap_or("");
    if path.ends_with("/chat/completions") || path.ends_with("/completions") {
        Api::OpenAiChat
    } else if ["/responses", "/messages", "/embeddings"]
        .iter()
        .any(|p| path.ends_with(p))
    {
        Api::Json
    } else if gemini_model(path).is_some() {
        Api::Gemini
    } else {
        Api::Other
    }
}

/// The model a native Gemini path names: `/v1beta/models/gemini-2.5-pro:generateContent`
/// names `gemini-2.5-pro`.
fn gemini_model(path: &str) -> Option<&str> {
    let path = path.split('?').next()?;
    let (head, method) = path.rsplit_once(':')?;
    if method != "generateContent" && method != "streamGenerateContent" {
        return None;
    }
    let (_, model) = head.rsplit_once("/models/")?;
    Some(model).filter(|m| !m.is_empty() && !m.contains('/'))
}

/// Makes a streaming Chat Completions request ask for usage: `stream_options.include_usage`
/// becomes `true` when the request streams and did not ask for it (the field absent or
/// `false`, `stream_options` absent or `null`). Returns whether the request changed. A
/// `stream_options` that is neither an object nor `null` is left alone: the provider refuses
/// the request, so nothing is generated.
fn ask_for_usage(v: &mut serde_json::Value) -> bool {
    let streaming = v.get("stream").and_then(|s| s.as_bool()) == Some(true);
    let asked = v
        .pointer("/stream_options/include_usage")
        .and_then(|b| b.as_bool())
        == Some(true);
    let Some(obj) = v.as_object_mut().filter(|_| streaming && !asked) else {
        return false;
    };
    let opts = obj
        .entry("stream_options")
        .or_insert(serde_json::Value::Null);
    if opts.is_null() {
        *opts = serde_json::json!({});
    }
    match opts.as_object_mut() {
        Some(opts) => {
            opts.insert("include_usage".into(), serde_json::Value::Bool(true));
            true
        }
        None => false,
    }
}

/// The decoder of a compressed response: `None` for `identity` (the tracker reads the bytes
/// as they are), else a [`jisr::buffer::ContentDecoder`] (feature `decompress`; without it,
/// only `identity` is readable and nothing else gets here).
#[cfg(feature = "decompress")]
struct Decoder(jisr::buffer::ContentDecoder);

#[cfg(feature = "decompress")]
impl Decoder {
    fn new(encoding: Encoding, max_window: u64) -> Option<Decoder> {
        (encoding != Encoding::Identity)
            .then(|| Decoder(jisr::buffer::ContentDecoder::new(encoding, max_window)))
    }
    fn feed(&mut self, input: &[u8], sink: impl FnMut(&[u8])) -> Result<(), DecodeError> {
        self.0.feed(input, sink)
    }
}

#[cfg(not(feature = "decompress"))]
struct Decoder;

#[cfg(not(feature = "decompress"))]
impl Decoder {
    fn new(_encoding: Encoding, _max_window: u64) -> Option<Decoder> {
        None
    }
    fn feed(&mut self, _input: &[u8], _sink: impl FnMut(&[u8])) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// Longest event held while deciding whether it is the usage-only chunk (which is a few
/// hundred bytes); a longer event is passed on as it comes.
const STRIP_HOLD: usize = 16 * 1024;

/// What the request handler hands to the response handler.
struct Admitted {
    model: String,
    cluster: &'static str,
    started: Instant,
    /// The gateway asked for usage the client did not ask for.
    added_usage: bool,
    /// `gen_ai.operation.name`.
    operation: &'static str,
    /// The request's share of the key's budget until its usage is known (released if it is
    /// dropped: a refusal after admission, an error, a client that left).
    reservation: Reservation,
}

/// Tokens to reserve for a request: its body bytes over `input_bytes_per_token` (a cheap
/// upper estimate of the prompt: JSON syntax and field names count too), plus the most it may
/// generate: `max_completion_tokens`, `max_tokens`, `max_output_tokens` or Gemini's
/// `generationConfig.maxOutputTokens`, times `n` choices, else `default_output_tokens`.
/// Embeddings generate nothing.
fn estimate(
    g: &Gateway,
    operation: &str,
    body_len: usize,
    json: Option<&serde_json::Value>,
) -> u64 {
    let input = (body_len as u64).div_ceil(g.bytes_per_token);
    let field = |p: &str| json.and_then(|v| v.pointer(p)).and_then(|n| n.as_u64());
    let output = match operation {
        "embeddings" => 0,
        _ => [
            "/max_completion_tokens",
            "/max_tokens",
            "/max_output_tokens",
            "/generationConfig/maxOutputTokens",
        ]
        .iter()
        .find_map(|p| field(p))
        .unwrap_or(g.default_output)
        .saturating_mul(field("/n").unwrap_or(1).clamp(1, 128)),
    };
    input.saturating_add(output)
}

/// Answers `429` with `retry-after` (seconds, rounded up), or `503` when the budget table is
/// full.
fn refuse(w: ResponseWriter<'_>, e: BudgetError) -> Option<Admitted> {
    match e {
        BudgetError::Exhausted { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            w.send_with(
                429,
                &[("retry-after", secs.to_string().as_bytes())],
                b"token budget spent\n",
                "llm_gateway_budget",
            );
        }
        BudgetError::Full => {
            w.send_with(503, &[], b"budget table full\n", "llm_gateway_budget_full");
        }
    }
    None
}

async fn admit(g: &Gateway, mut req: Request<'_>, w: ResponseWriter<'_>) -> Option<Admitted> {
    let started = Instant::now();
    let api = api_of(req.path().unwrap_or(""));
    let operation = operation_of(req.path().unwrap_or(""), api);
    let Some(key) = req
        .header_str("x-api-key")
        .filter(|k| g.keys.iter().any(|a| a == k))
        .map(str::to_string)
    else {
        w.send_with(401, &[], b"unknown api key\n", "llm_gateway_unknown_key");
        return None;
    };
    // A key with nothing left is refused before its body is read.
    if let Err(e) = g.budgets.check(key.as_bytes()) {
        return refuse(w, e);
    }
    let mut body = Vec::new();
    match req.read_body(g.max_body, &mut body).await {
        Ok(_) => {}
        Err(BodyError::TooLarge { limit }) => {
            let msg = format!("request body over {limit} bytes\n");
            w.send_with(413, &[], msg.as_bytes(), "llm_gateway_body_too_large");
            return None;
        }
        Err(_) => return None,
    }
    // A billable request whose body cannot be read cannot be billed: refused, not forwarded.
    let billable = api != Api::Other && req.method() == Some("POST");
    let mut json = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Some(v),
        _ if !billable => None,
        Ok(_) => return bad_body(w, "the request body is not a JSON object"),
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
            return bad_body(w, "the request body is empty");
        }
        Err(e) => return bad_body(w, &format!("the request body is not valid JSON ({e})")),
    };
    let model = match api {
        Api::Gemini => gemini_model(req.path().unwrap_or("")).unwrap_or(""),
        _ => json
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(|m| m.as_str())
            .unwrap_or(""),
    }
    .to_string();
    let cluster = match api {
        Api::Gemini => "gemini",
        _ => cluster_for(&model),
    };
    // Admitted only if the estimate fits what the key has left; from here on, every way out
    // but success drops the reservation, which gives it back.
    let tokens = if billable {
        estimate(g, operation, body.len(), json.as_ref())
    } else {
        0
    };
    let reservation = match g.budgets.reserve(key.as_bytes(), tokens) {
        Ok(r) => r,
        Err(e) => return refuse(w, e),
    };
    let mut added_usage = false;
    if let Some(v) = json
        .as_mut()
        .filter(|_| cluster == "openai" && api == Api::OpenAiChat)
    {
        if ask_for_usage(v) {
            if let Ok(new) = serde_json::to_vec(v) {
                added_usage = req.replace_body(&new).is_ok();
            }
        }
    }
    // The provider's key replaces the client's, in the header the provider expects.
    if let Some((_, secret)) = g.provider_keys.iter().find(|(c, _)| *c == cluster) {
        let Some(key) = w.secret(*secret).map(|k| k.trim_ascii().to_vec()) else {
            w.send_with(
                503,
                &[],
                b"provider credentials not available yet\n",
                "llm_gateway_no_provider_key",
            );
            return None;
        };
        for (_, header) in KEY_HEADERS {
            let _ = req.remove_header(header);
        }
        let value = match cluster {
            "openai" => [&b"Bearer "[..], &key].concat(),
            _ => key,
        };
        let header = KEY_HEADERS
            .iter()
            .find(|(c, _)| *c == cluster)
            .map_or("authorization", |(_, h)| h);
        // A key that is not a valid header value (a stray control byte in the secret) is
        // refused by jisr; the request must not go on without credentials.
        if let Err(e) = req.set_header(header, &value) {
            w.log(
                Level::Error,
                format_args!("llm_gateway: provider key for {cluster}: {e}"),
            );
            w.send_with(
                503,
                &[],
                b"provider credentials not usable\n",
                "llm_gateway_bad_provider_key",
            );
            return None;
        }
    }
    if billable {
        // A stream whose usage chunk is to be removed must come uncompressed (compressed
        // bytes cannot be edited); otherwise the configured policy.
        let policy = if added_usage {
            AcceptEncoding::Strip
        } else {
            g.accept_encoding
        };
        match policy {
            AcceptEncoding::Pass => {}
            AcceptEncoding::Strip => {
                let _ = req.remove_header("accept-encoding");
            }
            AcceptEncoding::Readable => {
                let kept = req
                    .header_str("accept-encoding")
                    .map(readable_codings)
                    .unwrap_or_default();
                if kept.is_empty() {
                    let _ = req.remove_header("accept-encoding");
                } else {
                    let _ = req.set_header("accept-encoding", &kept);
                }
            }
        }
    }
    let _ = req.set_header("x-cluster", cluster);
    w.clear_route_cache();
    w.set_metadata_str("llm_gateway", "cluster", cluster);
    Some(Admitted {
        model,
        cluster,
        started,
        added_usage,
        operation,
        reservation,
    })
}

/// The codings of an `accept-encoding` value that this build can decode, with their weights:
/// `gzip;q=1.0, br, compress` becomes `gzip;q=1.0, br` (with the `decompress` feature).
/// `identity` and `*` are dropped: identity is always acceptable unless refused, and `*`
/// would allow a coding the gateway cannot read.
fn readable_codings(value: &str) -> String {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| {
            let coding = item.split(';').next().unwrap_or("").trim();
            matches!(Encoding::from_header(coding.as_bytes()), Some(e) if e != Encoding::Identity && e.readable())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Answers `400` (details `llm_gateway_bad_body`): the gateway cannot bill what it cannot read.
fn bad_body(w: ResponseWriter<'_>, why: &str) -> Option<Admitted> {
    let msg = format!("{why}: the gateway cannot bill a request it cannot read\n");
    w.send_with(400, &[], msg.as_bytes(), "llm_gateway_bad_body");
    None
}

async fn bill(
    g: &Gateway,
    admitted: Option<Admitted>,
    mut resp: Response<'_>,
    w: ResponseWriter<'_>,
) {
    let Some(a) = admitted else {
        resp.skip_body();
        return;
    };
    let ttfb = w
        .timing()
        .ok()
        .and_then(|t| t.since_start(TimingPoint::FirstUpstreamRxByteReceived))
        .unwrap_or_else(|| a.started.elapsed());
    let _ = w.histogram_record(g.ttfb, &[a.cluster], ttfb.as_millis() as u64);
    let mut tracker = UsageTracker::new();
    // A compressed body is decoded for the tracker; the client gets the original bytes.
    let encoding = resp
        .header("content-encoding")
        .map_or(Some(Encoding::Identity), Encoding::from_header)
        .filter(|e| e.readable());
    let Some(encoding) = encoding else {
        resp.skip_body();
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            let _ = w.counter_add(g.unbilled, &["unreadable_encoding"], 1);
        }
        return;
    };
    let mut decoder = Decoder::new(encoding, g.max_window);
    let mut decode_error = None;
    // The usage-only chunk the client did not ask for is removed from what it sees (each
    // chunk is replaced once read whole); a response framed by its length keeps every byte.
    let mut strip = (a.added_usage
        && encoding == Encoding::Identity
        && resp.header("content-length").is_none()
        && resp
            .header_str("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")))
    .then(|| (UsageChunkStripper::new(STRIP_HOLD), Vec::new()));
    let mut first_byte = None;
    let mut buf = [0u8; 8192];
    loop {
        match resp.read(&mut buf).await {
            // A response cut short still bills what it reported.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                first_byte.get_or_insert_with(|| a.started.elapsed());
                match decoder.as_mut() {
                    None => tracker.feed(&buf[..n]),
                    Some(d) if decode_error.is_none() => {
                        decode_error = d.feed(&buf[..n], |plain| tracker.feed(plain)).err();
                    }
                    Some(_) => {}
                }
                if let Some((stripper, out)) = strip.as_mut() {
                    stripper.feed(&buf[..n], |b| out.extend_from_slice(b));
                    if resp.chunk_unread() == 0 {
                        if resp.body_complete() {
                            stripper.finish(|b| out.extend_from_slice(b));
                        }
                        let _ = resp.replace_chunk(out);
                        out.clear();
                    }
                }
            }
        }
    }
    if let Some((stripper, out)) = strip.as_mut() {
        // The end of the stream came in a hook of its own: what is still held goes with it.
        stripper.finish(|b| out.extend_from_slice(b));
        if !out.is_empty() {
            let _ = resp.replace_chunk(out);
        }
    }
    if tracker.usage().is_none() && resp.status().is_some_and(|s| (200..300).contains(&s)) {
        let reason = match decode_error {
            Some(DecodeError::WindowTooLarge { .. }) => "window_too_large",
            Some(DecodeError::Corrupt) => "corrupt_encoding",
            None => "no_usage",
        };
        let _ = w.counter_add(g.unbilled, &[reason], 1);
    }
    let Some(u) = tracker.usage() else { return };
    let provider = match tracker.provider() {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Gemini => "gemini",
        _ => "unknown",
    };
    let kinds = [
        ("input", u.input_tokens),
        ("output", u.output_tokens),
        ("cached_input", u.cached_input_tokens),
        ("cache_creation_input", u.cache_creation_input_tokens),
        ("reasoning", u.reasoning_tokens),
    ];
    for (kind, n) in kinds {
        if let Some(n) = n {
            let _ = w.counter_add(g.tokens, &[provider, &a.model, kind], n);
            w.set_metadata_num("llm_gateway", &format!("{kind}_tokens"), n as f64);
        }
    }
    if resp.status().is_some_and(|s| (200..300).contains(&s)) {
        let provider = match provider {
            "gemini" => "gcp.gemini",
            p => p,
        };
        let labels = [a.operation, provider, a.model.as_str()];
        let m = &g.genai;
        for (kind, n) in [("input", u.input_tokens), ("output", u.output_tokens)] {
            if let Some(n) = n {
                let _ = w.histogram_record(m.tokens, &[labels[0], labels[1], labels[2], kind], n);
            }
        }
        let total_time = a.started.elapsed();
        let _ = w.histogram_record(m.duration_ms, &labels, total_time.as_millis() as u64);
        if let Some(first) = first_byte {
            let _ = w.histogram_record(m.first_token_ms, &labels, first.as_millis() as u64);
            if let Some(out) = u.output_tokens.filter(|n| *n > 1) {
                let per = total_time.saturating_sub(first).as_micros() / u128::from(out - 1);
                let _ = w.histogram_record(m.per_output_token_us, &labels, per as u64);
            }
        }
    }
    let total = u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0);
    let reserved = a.reservation.tokens();
    if total > reserved {
        let _ = w.counter_add(g.overrun, &[], total - reserved);
    }
    a.reservation.settle(total);
    // For access logs, and for Envoy's global rate-limit filter, which charges the filter
    // state `envoy.ratelimit.hits_addend` to the rate-limit service when a route rate limit
    // with `apply_on_stream_done` runs (see the module docs).
    w.set_metadata_num("envoy.ratelimit", "hits_addend", total as f64);
    let _ = w.set_filter_state_typed("envoy.ratelimit.hits_addend", total.to_string().as_bytes());
}

pub(crate) fn register(r: &mut Registry) {
    r.filter("llm_gateway")
        .state(load)
        .respond(ResponseMode::Observe, admit, bill);
}

jisr::export!(register);
