//! Byte searches tuned for short runs: a word at a time over the first bytes, then `memchr`.

use memchr::{memchr2, memchr3};

/// How far the word-at-a-time loops look before handing over to `memchr`: most JSON strings,
/// values and event-stream lines are short, and a plain loop beats a `memchr` call for the first bytes.
pub(super) const SHORT: usize = 32;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Marks the bytes of `word` equal to `b` (exact for the lowest one).
fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI
}

/// The first `a` or `b` in `hay`.
#[inline]
pub(super) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let head = &hay[..hay.len().min(SHORT)];
    let mut words = head.chunks_exact(8);
    let mut i = 0;
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let m = bytes_equal(w, a) | bytes_equal(w, b);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if let Some(at) = words.remainder().iter().position(|&x| x == a || x == b) {
        return Some(i + at);
    }
    memchr2(a, b, hay.get(SHORT..)?).map(|at| SHORT + at)
}

/// The first `a`, `b` or `c` in `hay`.
#[inline]
pub(super) fn find3(hay: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    let head = &hay[..hay.len().min(SHORT)];
    let mut words = head.chunks_exact(8);
    let mut i = 0;
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let m = bytes_equal(w, a) | bytes_equal(w, b) | bytes_equal(w, c);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = words.remainder();
    if let Some(at) = rest.iter().position(|&x| x == a || x == b || x == c) {
        return Some(i + at);
    }
    memchr3(a, b, c, hay.get(SHORT..)?).map(|at| SHORT + at)
}
