//! [`HeadTail`]: the first H and the last T bytes of a stream.

use super::Ring;

/// Keeps the first `head_capacity` and the last `tail_capacity` bytes of a stream.
///
/// Storage is allocated once, in [`HeadTail::new`]; either capacity may be 0.
///
/// The head and the tail are independent views of the same stream, so when the stream is
/// shorter than `head_capacity + tail_capacity` they **share bytes**: the tail always holds the
/// last bytes written, even those also in the head. [`HeadTail::overlap`] says how many bytes
/// are in both, [`HeadTail::dropped`] how many are in neither (the middle that was not kept),
/// and [`HeadTail::tail_after_head`] gives the tail without the shared bytes, so that when
/// nothing was dropped `head` followed by `tail_after_head` is exactly the stream.
///
/// ```
/// use jisr_buffer::HeadTail;
///
/// let mut cap = HeadTail::new(4, 4);
/// cap.write(b"0123456789");
/// assert_eq!(cap.head(), b"0123");
/// assert_eq!([cap.tail().0, cap.tail().1].concat(), b"6789");
/// assert_eq!(cap.dropped(), 2); // "45"
///
/// let mut short = HeadTail::new(4, 4);
/// short.write(b"abcdef");
/// assert_eq!(short.head(), b"abcd");
/// assert_eq!([short.tail().0, short.tail().1].concat(), b"cdef");
/// assert_eq!(short.overlap(), 2); // "cd" is in both
/// let (a, b) = short.tail_after_head();
/// assert_eq!([short.head(), a, b].concat(), b"abcdef");
/// ```
#[derive(Clone, Debug)]
pub struct HeadTail {
    head: Box<[u8]>,
    head_len: usize,
    tail: Ring,
}

impl HeadTail {
    /// Creates a capture of the first `head_capacity` and last `tail_capacity` bytes.
    ///
    /// ```
    /// let cap = jisr_buffer::HeadTail::new(1024, 0);
    /// assert!(cap.head().is_empty());
    /// ```
    pub fn new(head_capacity: usize, tail_capacity: usize) -> Self {
        HeadTail {
            head: vec![0; head_capacity].into_boxed_slice(),
            head_len: 0,
            tail: Ring::new(tail_capacity),
        }
    }

    /// Appends `data` to the stream.
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(2, 2);
    /// cap.write(b"a");
    /// cap.write(b"bcd");
    /// assert_eq!(cap.head(), b"ab");
    /// ```
    pub fn write(&mut self, data: &[u8]) {
        let room = self.head.len() - self.head_len;
        let n = room.min(data.len());
        self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
        self.head_len += n;
        self.tail.write(data);
    }

    /// The first bytes of the stream, up to `head_capacity`.
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(3, 0);
    /// cap.write(b"abcdef");
    /// assert_eq!(cap.head(), b"abc");
    /// ```
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// The last bytes of the stream, up to `tail_capacity`, oldest first, as two slices.
    ///
    /// These may include bytes that are also in [`HeadTail::head`].
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(0, 3);
    /// cap.write(b"abcdef");
    /// assert_eq!([cap.tail().0, cap.tail().1].concat(), b"def");
    /// ```
    pub fn tail(&self) -> (&[u8], &[u8]) {
        self.tail.as_slices()
    }

    /// The tail without the bytes it shares with the head.
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(4, 4);
    /// cap.write(b"abcde");
    /// assert_eq!(cap.tail_after_head(), (&b"e"[..], &b""[..]));
    /// ```
    pub fn tail_after_head(&self) -> (&[u8], &[u8]) {
        let (a, b) = self.tail.as_slices();
        let skip = self.overlap();
        if skip <= a.len() {
            (&a[skip..], b)
        } else {
            (&b[skip - a.len()..], &[])
        }
    }

    /// Every byte written since creation or the last [`HeadTail::clear`].
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(1, 1);
    /// cap.write(b"abc");
    /// assert_eq!(cap.total_written(), 3);
    /// ```
    pub fn total_written(&self) -> u64 {
        self.tail.total_written()
    }

    /// Bytes in neither the head nor the tail: the middle of the stream that was not kept.
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(1, 1);
    /// cap.write(b"abc");
    /// assert_eq!(cap.dropped(), 1);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.tail.dropped().saturating_sub(self.head_len as u64)
    }

    /// Bytes held in both the head and the tail (only when the stream is short).
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(3, 3);
    /// cap.write(b"abcd");
    /// assert_eq!(cap.overlap(), 2);
    /// ```
    pub fn overlap(&self) -> usize {
        let head = self.head_len as u64;
        // Bounded by the head length, so the cast cannot truncate.
        head.saturating_sub(self.tail.dropped()) as usize
    }

    /// True when nothing was dropped: `head` + `tail_after_head` is the whole stream.
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(2, 2);
    /// cap.write(b"abcd");
    /// assert!(cap.is_complete());
    /// cap.write(b"e");
    /// assert!(!cap.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.dropped() == 0
    }

    /// Forgets everything written; the storage is kept.
    ///
    /// ```
    /// let mut cap = jisr_buffer::HeadTail::new(2, 2);
    /// cap.write(b"abc");
    /// cap.clear();
    /// assert_eq!(cap.total_written(), 0);
    /// assert!(cap.head().is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.head_len = 0;
        self.tail.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(p: (&[u8], &[u8])) -> Vec<u8> {
        [p.0, p.1].concat()
    }

    fn check(cap: &HeadTail, model: &[u8], h: usize, t: usize) {
        let head = &model[..model.len().min(h)];
        let tail_start = model.len().saturating_sub(t);
        assert_eq!(cap.head(), head);
        assert_eq!(join(cap.tail()), &model[tail_start..]);
        assert_eq!(cap.total_written(), model.len() as u64);
        let dropped = tail_start.saturating_sub(head.len());
        let overlap = head.len().saturating_sub(tail_start);
        assert_eq!(cap.dropped(), dropped as u64);
        assert_eq!(cap.overlap(), overlap);
        assert_eq!(cap.is_complete(), dropped == 0);
        let after = join(cap.tail_after_head());
        assert_eq!(after, &model[tail_start.max(head.len())..]);
        if dropped == 0 {
            assert_eq!([head, &after].concat(), model);
        }
    }

    #[test]
    fn matches_a_model() {
        for h in 0..5 {
            for t in 0..5 {
                let mut cap = HeadTail::new(h, t);
                let mut model = Vec::new();
                check(&cap, &model, h, t);
                for (i, size) in [1, 0, 2, 3, 1, 7, 2].into_iter().enumerate() {
                    let chunk = vec![b'a' + i as u8; size];
                    cap.write(&chunk);
                    model.extend_from_slice(&chunk);
                    check(&cap, &model, h, t);
                }
                cap.clear();
                check(&cap, &[], h, t);
            }
        }
    }

    #[test]
    fn overlap_when_short() {
        let mut cap = HeadTail::new(4, 4);
        cap.write(b"abc");
        assert_eq!(cap.head(), b"abc");
        assert_eq!(join(cap.tail()), b"abc");
        assert_eq!(cap.overlap(), 3);
        assert_eq!(join(cap.tail_after_head()), b"");
        cap.write(b"defgh");
        assert_eq!(cap.overlap(), 0);
        assert_eq!(cap.dropped(), 0);
        cap.write(b"i");
        assert_eq!(cap.dropped(), 1);
    }

    #[test]
    fn zero_sizes() {
        let mut cap = HeadTail::new(0, 0);
        cap.write(b"abc");
        assert_eq!(cap.dropped(), 3);
        assert_eq!(cap.head(), b"");
        assert_eq!(join(cap.tail()), b"");
    }
}
