//! ContentDecoder: no panic on any input in any coding (a corrupt body from a provider must
//! be an error, never a crash of the stream), and the same decoded bytes and the same verdict
//! whatever the chunking.
#![no_main]

use jisr_fuzz::buffer::{ContentDecoder, Encoding};
use jisr_fuzz::{Input, chunk_lengths};
use libfuzzer_sys::fuzz_target;

/// How much decoded output one run keeps for comparison.
const CAP: usize = 1 << 22;

fn run<'a>(
    enc: Encoding,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<u8>, Option<jisr_fuzz::buffer::DecodeError>) {
    let mut d = ContentDecoder::new(enc, 1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = d.feed(c, |b| {
            // A bomb stays bounded: keep exactly the first CAP bytes (the decoder keeps going in
            // bounded memory). Cut at a byte count, not at a chunk edge, so two chunkings that
            // decode the same stream collect the same prefix.
            let room = CAP.saturating_sub(out.len());
            out.extend_from_slice(&b[..b.len().min(room)]);
        }) {
            return (out, Some(e));
        }
    }
    (out, None)
}

fuzz_target!(|raw: &[u8]| {
    let mut input = Input::new(raw);
    let enc = match input.byte() % 4 {
        0 => Encoding::Gzip,
        1 => Encoding::Deflate,
        2 => Encoding::Brotli,
        _ => Encoding::Zstd,
    };
    let seed = input.byte();
    let body = input.rest;
    let (whole, whole_err) = run(enc, [body]);
    let (chunked, chunked_err) = run(enc, chunk_lengths(body, seed, 9));
    match (whole_err, chunked_err) {
        // The same bytes and verdict; an error may come at a different point only in what was
        // decoded before it, so compare the common prefix then.
        (None, None) => assert_eq!(whole, chunked),
        (Some(a), Some(b)) => {
            assert_eq!(a, b);
            let n = whole.len().min(chunked.len());
            assert_eq!(whole[..n], chunked[..n]);
        }
        (a, b) => {
            // Whole input can reach an error a chunked feed has not decoded up to yet only at
            // the end (zstd waits for whole blocks); anything decoded must still agree.
            let n = whole.len().min(chunked.len());
            assert_eq!(whole[..n], chunked[..n], "{a:?} {b:?}");
        }
    }
});
