//! [`Encoding`] and [`ContentDecoder`]: a compressed response body decoded as it passes, so its
//! content can be read (by a [`UsageTracker`](super::UsageTracker)) while the compressed bytes
//! go on unchanged.
//!
//! [`Encoding`] is always available. [`ContentDecoder`] needs the cargo feature `decompress`,
//! which brings three pure-Rust streaming decoders whose state the caller owns: `miniz_oxide`
//! (gzip, deflate), `brotli-decompressor` (br) and `ruzstd` (zstd). Without the feature, this
//! crate depends on none of them.

/// A `content-encoding`, as far as this crate reads it.
///
/// ```
/// use jisr_buffer::Encoding;
///
/// assert_eq!(Encoding::from_header(b"gzip"), Some(Encoding::Gzip));
/// assert_eq!(Encoding::from_header(b" BR "), Some(Encoding::Brotli));
/// assert_eq!(Encoding::from_header(b"x-gzip"), Some(Encoding::Gzip));
/// assert_eq!(Encoding::from_header(b""), Some(Encoding::Identity));
/// assert_eq!(Encoding::from_header(b"gzip, br"), None); // stacked: not read
/// assert_eq!(Encoding::from_header(b"compress"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No coding (`identity`, or no header).
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate`: zlib-wrapped (RFC 1950) or, as some servers send it, raw deflate.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// The coding a `content-encoding` value names, or `None` for one this crate cannot read (an
    /// unknown coding, or several stacked).
    pub fn from_header(value: &[u8]) -> Option<Encoding> {
        let v = value.trim_ascii();
        let is = |name: &str| v.eq_ignore_ascii_case(name.as_bytes());
        if v.is_empty() || is("identity") {
            Some(Encoding::Identity)
        } else if is("gzip") || is("x-gzip") {
            Some(Encoding::Gzip)
        } else if is("deflate") {
            Some(Encoding::Deflate)
        } else if is("br") {
            Some(Encoding::Brotli)
        } else if is("zstd") {
            Some(Encoding::Zstd)
        } else {
            None
        }
    }

    /// The coding's token (`identity`, `gzip`, `deflate`, `br`, `zstd`).
    ///
    /// ```
    /// assert_eq!(jisr_buffer::Encoding::Brotli.token(), "br");
    /// ```
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Whether this build can decode it: `identity` always, the others with the cargo
    /// feature `decompress`.
    ///
    /// ```
    /// use jisr_buffer::Encoding;
    /// assert!(Encoding::Identity.readable());
    /// assert_eq!(Encoding::Zstd.readable(), cfg!(feature = "decompress"));
    /// ```
    pub fn readable(self) -> bool {
        self == Encoding::Identity || cfg!(feature = "decompress")
    }
}

/// Why a `ContentDecoder` (feature `decompress`) stopped.
///
/// ```
/// use jisr_buffer::DecodeError;
/// assert_eq!(DecodeError::Corrupt.to_string(), "the body is not valid for its content-encoding");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a valid stream of their coding.
    Corrupt,
    /// The stream needs a larger window (history) than the decoder was allowed.
    WindowTooLarge {
        /// The window the stream asks for, in bytes.
        window: u64,
        /// The largest window allowed.
        max: u64,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Corrupt => f.write_str("the body is not valid for its content-encoding"),
            DecodeError::WindowTooLarge { window, max } => {
                write!(f, "the body needs a {window}-byte window, over {max}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(feature = "decompress")]
pub use imp::ContentDecoder;

#[cfg(feature = "decompress")]
mod imp {
    use super::{DecodeError, Encoding};
    use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
    use miniz_oxide::inflate::TINFLStatus;
    use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

    /// Output scratch: also the deflate history window, which must be 32 KiB and a power of two.
    const OUT: usize = 32 * 1024;

    /// Decodes a compressed body incrementally: feed it the bytes as they come, split
    /// anywhere; it hands the decoded bytes to a closure, in constant memory.
    ///
    /// What one decoder allocates, once, when created or at the start of its stream:
    ///
    /// | coding | memory |
    /// |---|---|
    /// | `identity` | nothing |
    /// | `gzip`, `deflate` | 32 KiB window + the inflate state (about 11 KiB) |
    /// | `br` | 32 KiB output + the brotli state (tens of KiB of tables) + a ring buffer of at most the stream's window (`2^WBITS - 16`, up to 16 MiB) |
    /// | `zstd` | 32 KiB output + the input of one block (at most 128 KiB) + the stream's window (plus one block) + tables |
    ///
    /// Measured (`tests/decode.rs`, peak live bytes while decoding a 300 KiB chat stream):
    /// gzip and deflate 43 KiB; br 125 KiB with a 64 KiB window, 577 KiB with a 4 MiB one (its
    /// ring buffer grows with the data, up to the window); zstd 482 KiB at the fastest level.
    ///
    /// When decoded bytes come out: gzip, deflate and br hand `sink` everything a `feed`
    /// decodes before it returns, however much that is. zstd holds back the newest window of
    /// decoded bytes until they are pushed out by newer ones or the frame ends (ruzstd keeps
    /// them for back-references): all of the body still arrives by the end of its frame, but a
    /// streamed zstd answer is read up to a window (plus the block in progress) late
    /// (`tests/decode.rs` checks the bound on a 1 MB frame with a 128 KiB window). Usage,
    /// which a stream reports at its end, is read in full either way.
    ///
    /// A stream asking for a window larger than `max_window` is refused
    /// ([`DecodeError::WindowTooLarge`]) before anything is allocated for it, so `max_window`
    /// bounds the memory. A gzip member's CRC and size, and zstd checksums, are not checked:
    /// the decoded bytes are only read, never passed on.
    ///
    /// ```
    /// use jisr_buffer::{ContentDecoder, Encoding, UsageTracker};
    ///
    /// // `{"usage":{"prompt_tokens":3}}`, gzip-compressed.
    /// let gz = [
    ///     0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 0xab, 0x56, 0x2a, 0x2d, 0x4e, 0x4c, 0x4f, 0x55,
    ///     0xb2, 0xaa, 0x56, 0x2a, 0x28, 0xca, 0xcf, 0x2d, 0x28, 0x89, 0x2f, 0xc9, 0xcf, 0x4e,
    ///     0xcd, 0x2b, 0x56, 0xb2, 0x32, 0xae, 0xad, 0x05, 0x00, 0x99, 0xe3, 0xc7, 0xe6, 0x1d,
    ///     0, 0, 0,
    /// ];
    /// let mut decoder = ContentDecoder::new(Encoding::Gzip, 1 << 20);
    /// let mut tracker = UsageTracker::new();
    /// for piece in gz.chunks(3) {
    ///     decoder.feed(piece, |plain| tracker.feed(plain)).unwrap();
    /// }
    /// assert_eq!(tracker.usage().unwrap().input_tokens, Some(3));
    /// ```
    pub struct ContentDecoder {
        inner: Inner,
        out: Vec<u8>,
        max_window: u64,
        failed: Option<DecodeError>,
    }

    impl std::fmt::Debug for ContentDecoder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ContentDecoder")
                .field("failed", &self.failed)
                .finish_non_exhaustive()
        }
    }

    enum Inner {
        Identity,
        Inflate(Box<Inflate>),
        Brotli(Option<Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>>),
        Zstd(Box<Zstd>),
    }

    /// Where a gzip or deflate stream is.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Stage {
        /// `deflate`: before the first byte (zlib or raw?).
        Sniff,
        /// gzip header: `n` bytes of the fixed 10 read.
        Fixed(u8),
        /// gzip `FEXTRA` length: `n` of 2 bytes read.
        ExtraLen(u8),
        /// gzip `FEXTRA` bytes left.
        Extra(u16),
        /// gzip `FNAME`, then `FCOMMENT` (zero-terminated).
        Name,
        Comment,
        /// gzip header CRC: bytes left.
        HeaderCrc(u8),
        /// Deflate data.
        Body,
        /// gzip trailer: bytes left (then another member may follow).
        Trailer(u8),
        /// The stream ended; anything after is ignored.
        Done,
    }

    struct Inflate {
        state: DecompressorOxide,
        gzip: bool,
        stage: Stage,
        flags: u8,
        xlen: u16,
        zlib: bool,
        out_pos: usize,
    }

    struct Zstd {
        decoder: ruzstd::decoding::FrameDecoder,
        /// Input not consumed yet: at most one block and its header.
        pending: Vec<u8>,
        /// A frame is being decoded.
        in_frame: bool,
        /// Its header announced a checksum.
        checksum: bool,
    }

    impl ContentDecoder {
        /// A decoder for `encoding`, accepting windows of at most `max_window` bytes (deflate
        /// always needs 32 KiB).
        pub fn new(encoding: Encoding, max_window: u64) -> ContentDecoder {
            let inflate = |gzip| {
                Inner::Inflate(Box::new(Inflate {
                    state: DecompressorOxide::default(),
                    gzip,
                    stage: if gzip { Stage::Fixed(0) } else { Stage::Sniff },
                    flags: 0,
                    xlen: 0,
                    zlib: false,
                    out_pos: 0,
                }))
            };
            let inner = match encoding {
                Encoding::Identity => Inner::Identity,
                Encoding::Gzip => inflate(true),
                Encoding::Deflate => inflate(false),
                Encoding::Brotli => Inner::Brotli(None),
                Encoding::Zstd => Inner::Zstd(Box::new(Zstd {
                    decoder: ruzstd::decoding::FrameDecoder::new(),
                    pending: Vec::new(),
                    in_frame: false,
                    checksum: false,
                })),
            };
            let out = match encoding {
                Encoding::Identity => Vec::new(),
                _ => vec![0; OUT],
            };
            ContentDecoder {
                inner,
                out,
                max_window,
                failed: None,
            }
        }

        /// Decodes the next bytes of the body; `sink` gets the decoded bytes as they come.
        /// After an error, every call returns it again and decodes nothing.
        pub fn feed(
            &mut self,
            input: &[u8],
            mut sink: impl FnMut(&[u8]),
        ) -> Result<(), DecodeError> {
            if let Some(e) = self.failed {
                return Err(e);
            }
            let r = match &mut self.inner {
                Inner::Identity => {
                    sink(input);
                    Ok(())
                }
                Inner::Inflate(st) => st.feed(input, &mut self.out, &mut sink),
                Inner::Brotli(st) => brotli(st, self.max_window, input, &mut self.out, &mut sink),
                Inner::Zstd(st) => st.feed(input, self.max_window, &mut self.out, &mut sink),
            };
            if let Err(e) = r {
                self.failed = Some(e);
            }
            r
        }
    }

    impl Inflate {
        fn feed(
            &mut self,
            mut input: &[u8],
            out: &mut [u8],
            sink: &mut impl FnMut(&[u8]),
        ) -> Result<(), DecodeError> {
            while !input.is_empty() {
                match self.stage {
                    Stage::Done => return Ok(()),
                    Stage::Sniff => {
                        // A zlib header: method 8 and a window of at most 32 KiB. A raw
                        // deflate stream's first byte rarely looks like one.
                        let b = input[0];
                        self.zlib = b & 0x0f == 8 && b >> 4 <= 7;
                        self.stage = Stage::Body;
                        continue;
                    }
                    Stage::Body => {
                        let used = self.inflate(input, out, sink)?;
                        input = &input[used..];
                        continue;
                    }
                    _ => {}
                }
                let b = input[0];
                input = &input[1..];
                self.stage = match self.stage {
                    Stage::Fixed(n) => {
                        let ok = match n {
                            0 => b == 0x1f,
                            1 => b == 0x8b,
                            2 => b == 8,
                            _ => true,
                        };
                        if !ok {
                            return Err(DecodeError::Corrupt);
                        }
                        if n == 3 {
                            self.flags = b;
                        }
                        if n < 9 {
                            Stage::Fixed(n + 1)
                        } else {
                            self.after(0)
                        }
                    }
                    Stage::ExtraLen(n) => {
                        self.xlen |= u16::from(b) << (8 * n);
                        if n == 0 {
                            Stage::ExtraLen(1)
                        } else if self.xlen == 0 {
                            self.after(1)
                        } else {
                            Stage::Extra(self.xlen)
                        }
                    }
                    Stage::Extra(left) => {
                        if left > 1 {
                            Stage::Extra(left - 1)
                        } else {
                            self.after(1)
                        }
                    }
                    Stage::Name if b == 0 => self.after(2),
                    Stage::Comment if b == 0 => self.after(3),
                    s @ (Stage::Name | Stage::Comment) => s,
                    Stage::HeaderCrc(left) => {
                        if left > 1 {
                            Stage::HeaderCrc(left - 1)
                        } else {
                            self.state.init();
                            Stage::Body
                        }
                    }
                    Stage::Trailer(left) => {
                        if left > 1 {
                            Stage::Trailer(left - 1)
                        } else {
                            // Another member may follow.
                            self.flags = 0;
                            self.xlen = 0;
                            Stage::Fixed(0)
                        }
                    }
                    Stage::Sniff | Stage::Body | Stage::Done => unreachable!("handled above"),
                };
            }
            Ok(())
        }

        /// The next gzip header stage after the optional part `done` (0 fixed, 1 extra,
        /// 2 name, 3 comment).
        fn after(&mut self, done: u8) -> Stage {
            const FHCRC: u8 = 2;
            const FEXTRA: u8 = 4;
            const FNAME: u8 = 8;
            const FCOMMENT: u8 = 16;
            if done < 1 && self.flags & FEXTRA != 0 {
                return Stage::ExtraLen(0);
            }
            if done < 2 && self.flags & FNAME != 0 {
                return Stage::Name;
            }
            if done < 3 && self.flags & FCOMMENT != 0 {
                return Stage::Comment;
            }
            if self.flags & FHCRC != 0 {
                return Stage::HeaderCrc(2);
            }
            self.state.init();
            Stage::Body
        }

        /// Inflates from `input`; returns how many bytes it used.
        fn inflate(
            &mut self,
            input: &[u8],
            out: &mut [u8],
            sink: &mut impl FnMut(&[u8]),
        ) -> Result<usize, DecodeError> {
            let mut flags =
                inflate_flags::TINFL_FLAG_HAS_MORE_INPUT | inflate_flags::TINFL_FLAG_IGNORE_ADLER32;
            if self.zlib {
                flags |= inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER;
            }
            let mut used = 0;
            loop {
                let (status, n_in, n_out) =
                    decompress(&mut self.state, &input[used..], out, self.out_pos, flags);
                used += n_in;
                if n_out > 0 {
                    sink(&out[self.out_pos..self.out_pos + n_out]);
                }
                self.out_pos = (self.out_pos + n_out) & (OUT - 1);
                match status {
                    TINFLStatus::HasMoreOutput => {}
                    TINFLStatus::NeedsMoreInput => return Ok(used),
                    TINFLStatus::Done => {
                        self.stage = if self.gzip {
                            Stage::Trailer(8)
                        } else {
                            Stage::Done
                        };
                        return Ok(used);
                    }
                    _ => return Err(DecodeError::Corrupt),
                }
            }
        }
    }

    /// The window a brotli stream asks for, from its first byte (RFC 7932, section 9.1);
    /// `None` for the large-window extension, which is not read.
    fn brotli_window(first: u8) -> Option<u64> {
        let bits = if first & 1 == 0 {
            16
        } else if (first >> 1) & 7 != 0 {
            17 + u32::from((first >> 1) & 7)
        } else {
            match (first >> 4) & 7 {
                0 => 17,
                1 => return None,
                m => 8 + u32::from(m),
            }
        };
        Some((1u64 << bits) - 16)
    }

    fn brotli(
        st: &mut Option<Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>>,
        max_window: u64,
        input: &[u8],
        out: &mut [u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        if input.is_empty() {
            return Ok(());
        }
        let state = match st {
            Some(s) => s,
            None => {
                let window = brotli_window(input[0]).ok_or(DecodeError::Corrupt)?;
                if window > max_window {
                    return Err(DecodeError::WindowTooLarge {
                        window,
                        max: max_window,
                    });
                }
                st.insert(Box::new(BrotliState::new(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                )))
            }
        };
        let mut available_in = input.len();
        let mut input_offset = 0;
        loop {
            let mut available_out = out.len();
            let mut output_offset = 0;
            let mut total_out = 0;
            let r = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                input,
                &mut available_out,
                &mut output_offset,
                out,
                &mut total_out,
                state,
            );
            if output_offset > 0 {
                sink(&out[..output_offset]);
            }
            match r {
                BrotliResult::NeedsMoreOutput => {}
                // The decoder says "more input" as soon as the input is used up, even when it
                // filled `out` and still holds decoded bytes in its window. Drain those now:
                // otherwise they come one chunk late, and never at a truncated end.
                BrotliResult::NeedsMoreInput | BrotliResult::ResultSuccess
                    if output_offset == out.len() => {}
                BrotliResult::NeedsMoreInput | BrotliResult::ResultSuccess => return Ok(()),
                BrotliResult::ResultFailure => return Err(DecodeError::Corrupt),
            }
        }
    }

    /// Largest zstd frame header: magic 4, descriptor 1, window 1, dictionary 4, size 8.
    const ZSTD_MAX_HEADER: usize = 18;

    /// The window a zstd frame header asks for: `Ok(None)` if more bytes are needed.
    fn zstd_window(h: &[u8]) -> Result<Option<u64>, DecodeError> {
        if h.len() < 5 {
            return Ok(None);
        }
        if h[..4] != [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(DecodeError::Corrupt);
        }
        let d = h[4];
        let single = d & 0x20 != 0;
        if !single {
            let Some(&w) = h.get(5) else { return Ok(None) };
            let log = 10 + u32::from(w >> 3);
            let base = 1u64 << log;
            return Ok(Some(base + (base / 8) * u64::from(w & 7)));
        }
        // Single segment: the window is the content size.
        let dict = [0, 1, 2, 4][usize::from(d & 3)];
        let fcs = [1, 2, 4, 8][usize::from(d >> 6)];
        let at = 5 + dict;
        let Some(bytes) = h.get(at..at + fcs) else {
            return Ok(None);
        };
        let mut size = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            size |= u64::from(*b) << (8 * i);
        }
        Ok(Some(if fcs == 2 { size + 256 } else { size }))
    }

    impl Zstd {
        fn feed(
            &mut self,
            input: &[u8],
            max_window: u64,
            out: &mut [u8],
            sink: &mut impl FnMut(&[u8]),
        ) -> Result<(), DecodeError> {
            self.pending.extend_from_slice(input);
            loop {
                if !self.in_frame {
                    let Some(window) = zstd_window(&self.pending)? else {
                        return Ok(());
                    };
                    if window > max_window {
                        return Err(DecodeError::WindowTooLarge {
                            window,
                            max: max_window,
                        });
                    }
                    let mut src = &self.pending[..];
                    match self.decoder.reset(&mut src) {
                        Ok(()) => {}
                        Err(_) if self.pending.len() < ZSTD_MAX_HEADER => return Ok(()),
                        Err(_) => return Err(DecodeError::Corrupt),
                    }
                    let used = self.pending.len() - src.len();
                    self.checksum = self.pending[4] & 4 != 0;
                    self.pending.drain(..used);
                    self.in_frame = true;
                }
                if self.checksum && self.pending.len() < 4 && !self.decoder.is_finished() {
                    // A frame with a checksum always ends with those 4 bytes; and the decoder
                    // takes any call past its last block for the checksum. So wait for them,
                    // but hand over what is decoded already: only the checksum is missing.
                    loop {
                        let n = std::io::Read::read(&mut self.decoder, out)
                            .map_err(|_| DecodeError::Corrupt)?;
                        if n == 0 {
                            return Ok(());
                        }
                        sink(&out[..n]);
                    }
                }
                let (read, written) = self
                    .decoder
                    .decode_from_to(&self.pending, out)
                    .map_err(|_| DecodeError::Corrupt)?;
                let read = read.min(self.pending.len());
                self.pending.drain(..read);
                if written > 0 {
                    sink(&out[..written]);
                }
                if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                    // The frame is over; another may follow.
                    self.in_frame = false;
                    if self.pending.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
                if read == 0 && written == 0 {
                    return Ok(());
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn brotli_windows() {
            assert_eq!(brotli_window(0), Some((1 << 16) - 16));
            assert_eq!(brotli_window(0b0000_1111), Some((1 << 24) - 16));
            assert_eq!(brotli_window(0b0000_0001), Some((1 << 17) - 16));
            assert_eq!(brotli_window(0b0010_0001), Some((1 << 10) - 16));
            assert_eq!(brotli_window(0b0001_0001), None);
        }

        #[test]
        fn zstd_windows() {
            let magic = [0x28, 0xb5, 0x2f, 0xfd];
            assert_eq!(zstd_window(&magic), Ok(None));
            assert_eq!(zstd_window(&[1, 2, 3, 4, 5]), Err(DecodeError::Corrupt));
            // Window descriptor: exponent 11, mantissa 2: 2^21 + 2 * 2^18.
            let h = [&magic[..], &[0x00, (11 << 3) | 2]].concat();
            assert_eq!(zstd_window(&h), Ok(Some((1 << 21) + 2 * (1 << 18))));
            // Single segment, 2-byte content size (plus 256), no dictionary.
            let h = [&magic[..], &[0x60, 0x10, 0x00]].concat();
            assert_eq!(zstd_window(&h), Ok(Some(0x10 + 256)));
            assert_eq!(zstd_window(&h[..6]), Ok(None));
        }
    }
}
