//! `ContentDecoder` (feature `decompress`) on gzip, deflate (zlib and raw), brotli and zstd
//! bodies made by independent encoders: the decoded bytes are the original whatever the
//! chunking, usage is read from compressed JSON and SSE, corrupt input and oversized windows
//! are errors, never silence.

use jisr_buffer::{ContentDecoder, DecodeError, Encoding, UsageTracker};

/// A chat stream long enough to span many deflate blocks and zstd blocks.
fn chat_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..3000 {
        s.push_str(&format!(
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\"word {i} {}\"}}}}],\"usage\":null}}\n\n",
            i * 7919 % 1000
        ));
    }
    s.push_str("data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":1187,\"completion_tokens\":301}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
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

/// A gzip member with every optional header field (extra, name, comment, header CRC).
fn gzip(data: &[u8], full_header: bool) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    if full_header {
        out[3] = 2 | 4 | 8 | 16;
        out.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        out.extend_from_slice(b"name.json\0a comment\0");
        out.extend_from_slice(&[0x12, 0x34]);
    }
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn brotli(data: &[u8], lgwin: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 9,
        lgwin,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn decode(enc: Encoding, body: &[u8], chunk: usize) -> Result<Vec<u8>, DecodeError> {
    let mut d = ContentDecoder::new(enc, 8 << 20);
    let mut out = Vec::new();
    for c in body.chunks(chunk.max(1)) {
        d.feed(c, |b| out.extend_from_slice(b))?;
    }
    Ok(out)
}

fn cases(plain: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    vec![
        (Encoding::Identity, plain.to_vec()),
        (Encoding::Gzip, gzip(plain, false)),
        (Encoding::Gzip, gzip(plain, true)),
        // Two members, as `cat a.gz b.gz` gives.
        (
            Encoding::Gzip,
            [
                gzip(&plain[..plain.len() / 3], true),
                gzip(&plain[plain.len() / 3..], false),
            ]
            .concat(),
        ),
        (
            Encoding::Deflate,
            miniz_oxide::deflate::compress_to_vec_zlib(plain, 6),
        ),
        (
            Encoding::Deflate,
            miniz_oxide::deflate::compress_to_vec(plain, 1),
        ),
        (Encoding::Brotli, brotli(plain, 22)),
        (Encoding::Brotli, brotli(plain, 10)),
        (Encoding::Zstd, zstd(plain)),
        (
            Encoding::Zstd,
            [
                zstd(&plain[..plain.len() / 2]),
                zstd(&plain[plain.len() / 2..]),
            ]
            .concat(),
        ),
    ]
}

#[test]
fn every_coding_decodes_to_the_original_whatever_the_chunking() {
    let plain = chat_stream();
    for (enc, body) in cases(&plain) {
        assert!(body.len() < plain.len() || enc == Encoding::Identity);
        for chunk in [1, 7, 4096, 65_537, usize::MAX] {
            let got = decode(enc, &body, chunk).unwrap_or_else(|e| panic!("{enc:?} {chunk}: {e}"));
            assert!(
                got == plain,
                "{enc:?} chunk {chunk}: {} of {} bytes",
                got.len(),
                plain.len()
            );
        }
    }
}

/// Each `feed` hands over everything its input decodes to, even when that is more than the
/// decoder's output buffer (32 KiB) and the input ends there: nothing is held back for a next
/// chunk that may never come. Checked on truncated streams (the end never arrives), whole
/// against byte by byte, in every coding.
#[test]
fn a_feed_delivers_all_it_decodes_even_past_one_output_buffer() {
    // Compresses about 300:1, so a few input bytes decode to far more than 32 KiB.
    let plain: Vec<u8> = (0..1_000_000u32)
        .map(|i| b"abcd"[(i / 5000 % 4) as usize])
        .collect();
    for (enc, body) in cases(&plain) {
        for cut in [body.len() / 3, body.len() / 2, body.len() - 1] {
            let prefix = &body[..cut];
            let whole = decode(enc, prefix, usize::MAX);
            let bytewise = decode(enc, prefix, 1);
            let (Ok(whole), Ok(bytewise)) = (whole, bytewise) else {
                continue;
            };
            assert!(
                whole == bytewise,
                "{enc:?} cut at {cut} of {}: one feed gave {} bytes, byte by byte {}",
                body.len(),
                whole.len(),
                bytewise.len()
            );
        }
    }
    // What the fuzzer found (target `decode`): a 91-byte brotli stream, cut short, whose first
    // feed decodes to 36,089 bytes; one feed used to give only the first 32,768.
    let found: &[u8] = &[
        0x01, 0x4e, 0xcd, 0x00, 0x13, 0x41, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x32,
        0x51, 0x51, 0x51, 0x96, 0x96, 0x96, 0x96, 0x51, 0x51, 0x00, 0x00, 0x8b, 0x08, 0x00, 0x00,
        0x5b, 0x00, 0xd6, 0x72, 0x02, 0x03, 0x4b, 0x27, 0x49, 0x2c, 0x69, 0x55, 0x51, 0x51, 0x51,
        0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x51, 0x51, 0xff, 0x7f, 0x41, 0xd3, 0xff, 0x51,
        0x51, 0x51, 0x51, 0x51, 0x59, 0x51, 0x2f, 0xc9, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00,
    ];
    let whole = decode(Encoding::Brotli, found, usize::MAX).unwrap();
    assert_eq!(whole.len(), 36_089);
    assert_eq!(whole, decode(Encoding::Brotli, found, 3).unwrap());
}

/// zstd keeps the newest window of decoded bytes until newer ones push them out or the frame
/// ends (ruzstd needs them for back-references): what comes out is always a prefix of the
/// body, never more than a window and two blocks behind, and all of it once the frame ends.
#[test]
fn zstd_hands_over_all_but_a_window_until_its_frame_ends() {
    // Little repetition, so the compressed frame has many blocks.
    let plain: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 7 + b'a')
        .collect();
    let body = zstd(&plain);
    // The fastest level's window: 128 KiB (frame header, window descriptor byte).
    assert_eq!(body[5] >> 3, 7, "window exponent");
    let window = 128 << 10;
    let block = 128 << 10;
    let mut got = Vec::new();
    let mut decoder = ContentDecoder::new(Encoding::Zstd, 8 << 20);
    let mut fed = 0;
    for piece in body.chunks(4096) {
        decoder.feed(piece, |b| got.extend_from_slice(b)).unwrap();
        fed += piece.len();
        assert!(got[..] == plain[..got.len()], "a prefix of the body");
        if fed < body.len() {
            // Bytes decoded so far are at least what the input could have produced minus
            // the partial block at the end of the input.
            let behind =
                plain.len() * fed / body.len() - got.len().min(plain.len() * fed / body.len());
            assert!(
                behind <= window + 2 * block,
                "{behind} bytes behind after {fed} of {}",
                body.len()
            );
        }
    }
    assert_eq!(got.len(), plain.len(), "all of it once the frame ends");
}

#[test]
fn usage_from_compressed_sse_and_json() {
    let json =
        br#"{"object":"chat.completion","usage":{"prompt_tokens":19,"completion_tokens":10}}"#;
    for plain in [chat_stream(), json.to_vec()] {
        for (enc, body) in cases(&plain) {
            let mut d = ContentDecoder::new(enc, 8 << 20);
            let mut tracker = UsageTracker::new();
            for c in body.chunks(999) {
                d.feed(c, |b| tracker.feed(b)).unwrap();
            }
            let u = tracker.usage().unwrap_or_else(|| panic!("{enc:?}"));
            assert!(
                u.input_tokens == Some(1187) || u.input_tokens == Some(19),
                "{enc:?}"
            );
        }
    }
}

#[test]
fn corrupt_streams_and_large_windows_are_errors() {
    let plain = chat_stream();
    for (enc, body) in cases(&plain) {
        if enc == Encoding::Identity {
            continue;
        }
        // Bytes flipped after the first few: an error, reported again on every later call.
        let mut bad = body.clone();
        for b in bad.iter_mut().skip(12).step_by(5) {
            *b ^= 0x5a;
        }
        let mut d = ContentDecoder::new(enc, 8 << 20);
        let r = bad.chunks(100).try_for_each(|c| d.feed(c, |_| {}));
        assert_eq!(r, Err(DecodeError::Corrupt), "{enc:?}");
        assert_eq!(d.feed(b"x", |_| panic!("decoded after an error")), r);
    }
    for body in [b"not gzip".to_vec(), vec![0x1f, 0x8b, 9]] {
        assert_eq!(decode(Encoding::Gzip, &body, 3), Err(DecodeError::Corrupt));
    }
    assert_eq!(
        decode(Encoding::Zstd, b"not zstd at all", 2),
        Err(DecodeError::Corrupt)
    );
    // A window over the limit is refused before anything is decoded.
    let big = brotli(&plain, 24);
    let mut d = ContentDecoder::new(Encoding::Brotli, 1 << 20);
    assert_eq!(
        d.feed(&big, |_| panic!("decoded")),
        Err(DecodeError::WindowTooLarge {
            window: (1 << 24) - 16,
            max: 1 << 20
        })
    );
    let z = zstd(&plain);
    let mut d = ContentDecoder::new(Encoding::Zstd, 1024);
    assert!(matches!(
        d.feed(&z, |_| panic!("decoded")),
        Err(DecodeError::WindowTooLarge { max: 1024, .. })
    ));
}

mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts the bytes this thread allocates while `on`, and the peak live bytes.
    pub struct Counting;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn track(delta: isize) {
        // `try_with`: the thread-local may be gone while a thread exits.
        let _ = ON.try_with(|on| {
            if on.get() {
                LIVE.with(|l| {
                    l.set(l.get() + delta);
                    PEAK.with(|p| p.set(p.get().max(l.get())));
                });
            }
        });
    }

    // SAFETY: every call is forwarded to `System` with the same arguments; the counting only
    // touches thread-locals, which never allocate once initialised (const initialisers).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            track(layout.size() as isize);
            // SAFETY: the caller's contract is passed on unchanged.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            track(-(layout.size() as isize));
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            track(new as isize - layout.size() as isize);
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new) }
        }
    }

    /// The peak of live bytes allocated by `f` on this thread.
    pub fn peak(f: impl FnOnce()) -> usize {
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        ON.with(|on| on.set(true));
        f();
        ON.with(|on| on.set(false));
        PEAK.with(|p| p.get()) as usize
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// What one decoder holds at most while it decodes a 300 KiB chat stream, per coding: the
/// figures of `ContentDecoder`'s documentation. Printed with `--nocapture`.
#[test]
fn memory_per_stream_is_bounded_by_the_window() {
    let plain = chat_stream();
    for (what, enc, body, bound) in [
        ("identity", Encoding::Identity, plain.clone(), 0),
        ("gzip", Encoding::Gzip, gzip(&plain, false), 64 << 10),
        (
            "deflate",
            Encoding::Deflate,
            miniz_oxide::deflate::compress_to_vec_zlib(&plain, 6),
            64 << 10,
        ),
        (
            "br, 64 KiB window",
            Encoding::Brotli,
            brotli(&plain, 16),
            192 << 10,
        ),
        (
            "br, 4 MiB window",
            Encoding::Brotli,
            brotli(&plain, 22),
            5 << 20,
        ),
        ("zstd, fastest", Encoding::Zstd, zstd(&plain), 9 << 20),
    ] {
        let peak = counting::peak(|| {
            let mut d = ContentDecoder::new(enc, 8 << 20);
            for c in body.chunks(16 << 10) {
                d.feed(c, |_| {}).unwrap();
            }
        });
        println!("{what}: peak {peak} bytes");
        assert!(peak <= bound, "{what}: {peak} > {bound}");
    }
}
