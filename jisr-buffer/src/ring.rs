//! [`Ring`]: the last N bytes of a stream.

/// Keeps the last `capacity` bytes written to it, and counts every byte it has seen.
///
/// Storage is allocated once, in [`Ring::new`]; writing and reading never allocate. Reading
/// never changes the ring: [`Ring::as_slices`] twice in a row gives the same answer, and later
/// writes continue the same window. A capacity of 0 is valid: the ring keeps nothing and only
/// counts.
///
/// ```
/// use jisr_buffer::Ring;
///
/// let mut ring = Ring::new(8);
/// ring.write(b"hello, ");
/// ring.write(b"world");
/// assert_eq!(ring.total_written(), 12);
///
/// let mut out = [0u8; 8];
/// let n = ring.copy_to(&mut out);
/// assert_eq!(&out[..n], b"o, world");
///
/// let (older, newer) = ring.as_slices();
/// assert_eq!([older, newer].concat(), b"o, world");
/// ```
#[derive(Clone)]
pub struct Ring {
    buf: Box<[u8]>,
    /// Index where the next byte goes (always < capacity when capacity > 0).
    end: usize,
    /// Bytes currently held, at most the capacity.
    len: usize,
    total: u64,
}

impl Ring {
    /// Creates a ring that keeps the last `capacity` bytes. This is its only allocation.
    ///
    /// ```
    /// let ring = jisr_buffer::Ring::new(4096);
    /// assert_eq!(ring.capacity(), 4096);
    /// assert!(ring.is_empty());
    /// ```
    pub fn new(capacity: usize) -> Self {
        Ring {
            buf: vec![0; capacity].into_boxed_slice(),
            end: 0,
            len: 0,
            total: 0,
        }
    }

    /// The most bytes the ring keeps.
    ///
    /// ```
    /// assert_eq!(jisr_buffer::Ring::new(0).capacity(), 0);
    /// ```
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes currently held: `min(total_written, capacity)` since the last [`Ring::clear`].
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(3);
    /// ring.write(b"abcdef");
    /// assert_eq!(ring.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the ring holds no bytes.
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(0);
    /// ring.write(b"abc");
    /// assert!(ring.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every byte written since creation or the last [`Ring::clear`], kept or not.
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(2);
    /// ring.write(b"abc");
    /// assert_eq!(ring.total_written(), 3);
    /// ```
    pub fn total_written(&self) -> u64 {
        self.total
    }

    /// Bytes written but no longer kept: `total_written - len`.
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(2);
    /// ring.write(b"abcde");
    /// assert_eq!(ring.dropped(), 3);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.total - self.len as u64
    }

    /// Appends `data`, forgetting the oldest bytes beyond the capacity.
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(4);
    /// ring.write(b"abc");
    /// ring.write(b"def");
    /// assert_eq!(ring.as_slices(), (&b"cd"[..], &b"ef"[..]));
    /// ```
    pub fn write(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let cap = self.buf.len();
        if cap == 0 {
            return;
        }
        if data.len() >= cap {
            self.buf.copy_from_slice(&data[data.len() - cap..]);
            self.end = 0;
            self.len = cap;
            return;
        }
        let first = data.len().min(cap - self.end);
        self.buf[self.end..self.end + first].copy_from_slice(&data[..first]);
        let second = data.len() - first;
        self.buf[..second].copy_from_slice(&data[first..]);
        self.end = (self.end + data.len()) % cap;
        self.len = (self.len + data.len()).min(cap);
    }

    /// The held bytes, oldest first, as two slices (the second is empty unless they wrap).
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(4);
    /// ring.write(b"ab");
    /// assert_eq!(ring.as_slices(), (&b"ab"[..], &b""[..]));
    /// ```
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let cap = self.buf.len();
        if self.len <= self.end {
            (&self.buf[self.end - self.len..self.end], &[])
        } else {
            let start = cap - (self.len - self.end);
            (&self.buf[start..], &self.buf[..self.end])
        }
    }

    /// Copies the held bytes, oldest first, into `out` and returns how many were copied.
    ///
    /// When `out` is shorter than [`Ring::len`], it receives the newest `out.len()` bytes.
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(8);
    /// ring.write(b"abcdef");
    /// let mut out = [0u8; 4];
    /// assert_eq!(ring.copy_to(&mut out), 4);
    /// assert_eq!(&out, b"cdef");
    /// ```
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let (mut a, mut b) = self.as_slices();
        let n = out.len().min(self.len);
        let mut skip = self.len - n;
        let cut = skip.min(a.len());
        a = &a[cut..];
        skip -= cut;
        b = &b[skip..];
        out[..a.len()].copy_from_slice(a);
        out[a.len()..n].copy_from_slice(b);
        n
    }

    /// Forgets the held bytes and resets [`Ring::total_written`] to 0; the storage is kept.
    ///
    /// ```
    /// let mut ring = jisr_buffer::Ring::new(4);
    /// ring.write(b"abc");
    /// ring.clear();
    /// assert!(ring.is_empty());
    /// assert_eq!(ring.total_written(), 0);
    /// ```
    pub fn clear(&mut self) {
        self.end = 0;
        self.len = 0;
        self.total = 0;
    }
}

impl core::fmt::Debug for Ring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .field("total", &self.total)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(ring: &Ring) -> Vec<u8> {
        let (a, b) = ring.as_slices();
        [a, b].concat()
    }

    fn last(model: &[u8], n: usize) -> &[u8] {
        &model[model.len().saturating_sub(n)..]
    }

    #[test]
    fn zero_capacity_keeps_nothing_and_terminates() {
        let mut ring = Ring::new(0);
        ring.write(b"");
        ring.write(b"abc");
        ring.write(&[7; 10_000]);
        assert_eq!(ring.as_slices(), (&b""[..], &b""[..]));
        assert_eq!(ring.total_written(), 10_003);
        assert_eq!(ring.dropped(), 10_003);
        assert_eq!(ring.copy_to(&mut [0; 4]), 0);
    }

    #[test]
    fn reading_does_not_mutate() {
        let mut ring = Ring::new(5);
        ring.write(b"abcdefg");
        let first = contents(&ring);
        assert_eq!(first, contents(&ring));
        let mut out = [0; 5];
        ring.copy_to(&mut out);
        ring.copy_to(&mut out);
        assert_eq!(&out, b"cdefg");
        ring.write(b"hi");
        assert_eq!(contents(&ring), b"efghi");
    }

    #[test]
    fn matches_a_model_for_every_write_size() {
        for cap in 0..7 {
            let mut ring = Ring::new(cap);
            let mut model = Vec::new();
            let mut byte = 0u8;
            for size in [0, 1, 2, 3, 5, 7, 1, 6, 0, 13, 2, 1, 1, 4] {
                let chunk: Vec<u8> = (0..size)
                    .map(|_| {
                        byte = byte.wrapping_add(1);
                        byte
                    })
                    .collect();
                ring.write(&chunk);
                model.extend_from_slice(&chunk);
                assert_eq!(contents(&ring), last(&model, cap), "cap {cap}");
                assert_eq!(ring.total_written(), model.len() as u64);
                for out_len in 0..=cap + 1 {
                    let mut out = vec![0; out_len];
                    let n = ring.copy_to(&mut out);
                    assert_eq!(&out[..n], last(last(&model, cap), out_len));
                }
            }
        }
    }

    #[test]
    fn exact_capacity_write_and_clear() {
        let mut ring = Ring::new(3);
        ring.write(b"xy");
        ring.write(b"abc");
        assert_eq!(contents(&ring), b"abc");
        ring.clear();
        assert_eq!(contents(&ring), b"");
        ring.write(b"z");
        assert_eq!(contents(&ring), b"z");
        assert_eq!(ring.total_written(), 1);
    }
}
