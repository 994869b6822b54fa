//! Per-worker spare storage: what a stream grows (header-arena blocks, byte buffers, callout
//! tables) starts empty, is taken from the worker's shelf when first used, and is given back
//! when the stream ends. A stream at rest, and a slot waiting in its pool, hold none of it.
//!
//! Each kind of storage has one shelf per thread (Envoy's workers), so taking and giving is a
//! plain `Vec` pop and push on the thread's own list: no lock, no atomic, no allocation once
//! the shelf has what its streams use. A shelf is bounded: it keeps at most `max_items` values,
//! at most `max_bytes` of heap memory in all, and never a value holding more than `max_item`
//! bytes (a stream that grew big frees what it grew when it ends). What a full shelf is handed
//! is freed.
//!
//! A kind may put a one-value cache in front of its shelf ([`Spare::cache`]): a plain `Cell`,
//! no borrow flag, holding the most recently given value (the top of the shelf). Most workers
//! run one stream at a time between hooks, so the value a stream gives back at its end is the
//! one the next stream takes: that round trip is a `Cell` swap. The cache counts in the shelf's
//! bounds: the list behind it keeps one value and [`Spare::CACHED`] bytes less.
//!
//! Values move between streams only through a shelf, by value: a value is held by one stream,
//! the cache or the shelf's list, never two of them (the unit tests check this for random
//! sequences, through the cache and the list).

use std::cell::{Cell, OnceCell, RefCell};
use std::thread::LocalKey;

/// Storage that can wait on a shelf between streams.
pub(crate) trait Spare: Sized + 'static {
    /// Heap bytes the value holds (what keeping it costs).
    fn held(&self) -> usize;
    /// Forgets the last stream's contents, keeping the storage. Runs before the value goes on
    /// the shelf, outside the shelf's borrow (it may drop wakers, which may run any code).
    fn recycle(&mut self);
    /// The calling thread's shelf of this kind.
    fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>>;
    /// The calling thread's one-value cache in front of the shelf, if the kind has one. It
    /// takes a given value of 1 to [`Spare::CACHED`] bytes; the shelf's list behind it is built
    /// one value and `CACHED` bytes smaller, so both together stay within the kind's bounds.
    #[inline]
    fn cache() -> Option<&'static LocalKey<Cell<Option<Self>>>> {
        None
    }
    /// Most bytes a cached value may hold.
    const CACHED: usize = 0;
}

/// One thread's spare values of one kind, with their bounds.
pub(crate) struct Shelf<T> {
    items: Vec<T>,
    /// Sum of `held` over `items`.
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    max_item: usize,
}

impl<T: Spare> Shelf<T> {
    /// An empty shelf keeping at most `max_items` values of at most `max_item` bytes each and
    /// `max_bytes` in all.
    pub(crate) const fn new(max_items: usize, max_bytes: usize, max_item: usize) -> Shelf<T> {
        Shelf {
            items: Vec::new(),
            bytes: 0,
            max_items,
            max_bytes,
            max_item,
        }
    }

    /// The most recently shelved value that `fits`, if any.
    #[inline]
    pub(crate) fn take_if(&mut self, fits: impl Fn(&T) -> bool) -> Option<T> {
        let i = self.items.iter().rposition(fits)?;
        let item = self.items.swap_remove(i);
        self.bytes -= item.held();
        Some(item)
    }

    /// Shelves a recycled value; hands it back when the shelf may not keep it (the caller
    /// frees it). A value that holds nothing is not kept (it costs nothing to make again).
    #[inline]
    pub(crate) fn put(&mut self, item: T) -> Option<T> {
        let held = item.held();
        if held == 0
            || self.items.len() >= self.max_items
            || held > self.max_item
            || self.bytes + held > self.max_bytes
        {
            return Some(item);
        }
        if self.items.capacity() == 0 {
            // Once, so the list never grows again.
            self.items.reserve_exact(self.max_items);
        }
        self.items.push(item);
        self.bytes += held;
        None
    }

    /// Values on the shelf.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Heap bytes of the values on the shelf.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        debug_assert_eq!(self.bytes, self.items.iter().map(T::held).sum::<usize>());
        self.bytes
    }
}

/// Takes a value of kind `T` from the calling thread's cache or shelf (the most recently given
/// one), or `None` when it has none (or the thread is exiting).
#[inline]
pub(crate) fn take<T: Spare>() -> Option<T> {
    if let Some(cache) = T::cache() {
        if let Ok(Some(item)) = cache.try_with(Cell::take) {
            return Some(item);
        }
    }
    take_shelved()
}

/// Takes the most recently shelved value from the calling thread's shelf, past the cache.
#[cold]
#[inline(never)]
fn take_shelved<T: Spare>() -> Option<T> {
    T::shelf()
        .try_with(|s| s.try_borrow_mut().ok()?.take_if(|_| true))
        .ok()
        .flatten()
}

/// Recycles `item` and gives it to the calling thread's cache or shelf; frees it when neither
/// may keep it.
#[inline]
pub(crate) fn give<T: Spare>(mut item: T) {
    item.recycle();
    if let Some(cache) = T::cache() {
        let held = item.held();
        if held != 0 && held <= T::CACHED {
            // The cache is the top of the shelf: the value it held moves to the list. (On a
            // thread that is exiting the closure does not run and drops `item`: freed.)
            if let Ok(Some(old)) = cache.try_with(|c| c.replace(Some(item))) {
                shelve(old);
            }
            return;
        }
    }
    shelve(item);
}

/// Gives a recycled `item` to the calling thread's shelf's list; frees it when the list is full
/// or may not keep it.
#[inline(never)]
fn shelve<T: Spare>(item: T) {
    let mut item = Some(item);
    let _ = T::shelf().try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if let Some(v) = item.take() {
                item = s.put(v);
            }
        }
    });
    // A value the shelf did not take is freed here, outside its borrow.
    drop(item);
}

/// The calling thread's shelf of `T`, its cache included: (values, bytes).
#[cfg(test)]
pub(crate) fn shelved<T: Spare>() -> (usize, usize) {
    let (n, bytes) = T::cache().map_or((0, 0), |c| {
        c.with(|c| {
            let v = c.take();
            let out = v.as_ref().map_or((0, 0), |v| (1, v.held()));
            c.set(v);
            out
        })
    });
    T::shelf().with(|s| {
        let s = s.borrow();
        (s.len() + n, s.bytes() + bytes)
    })
}

/// Storage of kind `T` that a stream takes from the shelf on first use ([`OnDemand::get_or_take`])
/// and gives back at reset ([`OnDemand::release`]); one pointer while unused. Once taken it
/// stays put until the release, which needs `&mut self`, so references to it never dangle.
pub(crate) struct OnDemand<T>(OnceCell<Box<T>>);

impl<T> Default for OnDemand<T> {
    fn default() -> Self {
        OnDemand(OnceCell::new())
    }
}

impl<T: Default> OnDemand<T>
where
    Box<T>: Spare,
{
    /// The storage, if this stream took it.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.get().map(|b| &**b)
    }

    /// The storage, taken from the shelf (or made) on the stream's first use.
    #[inline]
    pub(crate) fn get_or_take(&self) -> &T {
        self.0.get_or_init(|| take::<Box<T>>().unwrap_or_default())
    }

    /// Gives the storage back to the shelf (recycled), if the stream took it.
    #[inline]
    pub(crate) fn release(&mut self) {
        if self.0.get().is_some() {
            if let Some(b) = self.0.take() {
                give(b);
            }
        }
    }
}

/// A byte buffer, the spare kind of per-stream scratch (header snapshots, staged replies).
impl Spare for Vec<u8> {
    fn held(&self) -> usize {
        self.capacity()
    }
    fn recycle(&mut self) {
        self.clear();
    }
    fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>> {
        &BYTES
    }
    #[inline]
    fn cache() -> Option<&'static LocalKey<Cell<Option<Self>>>> {
        Some(&BYTES_CACHE)
    }
    const CACHED: usize = BYTES_CACHED;
}

/// Most byte buffers a worker keeps.
pub(crate) const BYTES_MAX_ITEMS: usize = 64;
/// Largest byte buffer a worker keeps (bigger ones are freed when their stream ends).
pub(crate) const BYTES_MAX_ITEM: usize = 64 * 1024;
/// Most bytes of byte buffers a worker keeps.
pub(crate) const BYTES_MAX_BYTES: usize = 512 * 1024;
/// Largest byte buffer the worker's cache takes (a staged reply's, a header snapshot's).
const BYTES_CACHED: usize = 16 * 1024;

thread_local! {
    /// The list behind the cache: one buffer and `BYTES_CACHED` bytes less, so both together
    /// keep at most `BYTES_MAX_ITEMS` buffers and `BYTES_MAX_BYTES`.
    static BYTES: RefCell<Shelf<Vec<u8>>> = const {
        RefCell::new(Shelf::new(
            BYTES_MAX_ITEMS - 1,
            BYTES_MAX_BYTES - BYTES_CACHED,
            BYTES_MAX_ITEM,
        ))
    };
    static BYTES_CACHE: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

/// Takes a byte buffer from the calling thread's shelf, or an empty one.
#[inline]
pub(crate) fn bytes() -> Vec<u8> {
    take::<Vec<u8>>().unwrap_or_default()
}

/// Gives a byte buffer back (nothing happens for one that never allocated).
#[inline]
pub(crate) fn give_bytes(buf: Vec<u8>) {
    if buf.capacity() != 0 {
        give(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// A test kind whose values carry an identity, so sharing would show; with a cache in
    /// front of its shelf, like the kinds the streams use.
    struct Buf(Vec<u8>);

    /// Most values and bytes the test kind's cache and list keep together.
    const BUF_ITEMS: usize = 4;
    const BUF_BYTES: usize = 4096;
    const BUF_ITEM: usize = 2048;

    impl Spare for Buf {
        fn held(&self) -> usize {
            self.0.capacity()
        }
        fn recycle(&mut self) {
            self.0.clear();
        }
        fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>> {
            thread_local! {
                static S: RefCell<Shelf<Buf>> = const {
                    RefCell::new(Shelf::new(BUF_ITEMS - 1, BUF_BYTES - 1024, BUF_ITEM))
                };
            }
            &S
        }
        fn cache() -> Option<&'static LocalKey<Cell<Option<Self>>>> {
            thread_local! {
                static C: Cell<Option<Buf>> = const { Cell::new(None) };
            }
            Some(&C)
        }
        // Smaller than the largest kept value, so big values go past the cache to the list.
        const CACHED: usize = 1024;
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Stream `i` takes a buffer (from the shelf, or a new one) if it holds none.
        Take(usize),
        /// Stream `i` writes `n` more bytes into its buffer.
        Grow(usize, usize),
        /// Stream `i` ends: its buffer goes back.
        Give(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize).prop_map(Op::Take),
            (0..6usize, 0..3000usize).prop_map(|(i, n)| Op::Grow(i, n)),
            (0..6usize).prop_map(Op::Give),
        ]
    }

    proptest! {
        #[test]
        fn shelf_bounds_hold_and_no_buffer_is_shared(ops in proptest::collection::vec(op(), 1..200)) {
            let mut streams: Vec<Option<Buf>> = (0..6).map(|_| None).collect();
            for op in ops {
                match op {
                    Op::Take(i) => {
                        if streams[i].is_none() {
                            let b = take::<Buf>().unwrap_or(Buf(Vec::new()));
                            // What comes off the shelf was recycled: empty.
                            prop_assert!(b.0.is_empty());
                            streams[i] = Some(b);
                        }
                    }
                    Op::Grow(i, n) => {
                        if let Some(b) = streams[i].as_mut() {
                            b.0.extend(std::iter::repeat_n(i as u8, n));
                        }
                    }
                    Op::Give(i) => {
                        if let Some(b) = streams[i].take() {
                            give(b);
                        }
                    }
                }
                // Every stream's bytes are its own (a shared buffer would mix them).
                for (i, b) in streams.iter().enumerate() {
                    if let Some(b) = b {
                        prop_assert!(b.0.iter().all(|&x| x == i as u8));
                    }
                }
                // No allocation is held twice: by two streams, or by a stream and the shelf.
                let mut seen = HashSet::new();
                for b in streams.iter().flatten() {
                    if b.0.capacity() > 0 {
                        prop_assert!(seen.insert(b.0.as_ptr() as usize));
                    }
                }
                let cached = Buf::cache().unwrap().with(|c| {
                    let v = c.take();
                    let out = v.as_ref().map(|b| (b.0.capacity(), b.0.as_ptr() as usize));
                    c.set(v);
                    out
                });
                if let Some((cap, ptr)) = cached {
                    // The cache holds a recycled value within its size limit, no one else's.
                    prop_assert!(cap > 0 && cap <= Buf::CACHED);
                    prop_assert!(seen.insert(ptr));
                }
                let shelf_ok = Buf::shelf().with(|s| {
                    let s = s.borrow();
                    s.items.iter().all(|b| {
                        b.0.capacity() > 0
                            && b.0.is_empty()
                            && b.0.capacity() <= s.max_item
                            && seen.insert(b.0.as_ptr() as usize)
                    }) && s.items.len() <= s.max_items
                        && s.bytes() <= s.max_bytes
                });
                prop_assert!(shelf_ok);
                // Cache and list together stay within the kind's bounds.
                let (n, bytes) = shelved::<Buf>();
                prop_assert!(n <= BUF_ITEMS && bytes <= BUF_BYTES);
            }
            // Leave the thread's shelf empty for the next case.
            while take::<Buf>().is_some() {}
        }
    }

    #[test]
    fn the_cache_is_the_top_of_the_shelf() {
        while take::<Buf>().is_some() {}
        let a = Buf(Vec::with_capacity(100));
        let b = Buf(Vec::with_capacity(200));
        let big = Buf(Vec::with_capacity(1500));
        let (pa, pb, pbig) = (a.0.as_ptr(), b.0.as_ptr(), big.0.as_ptr());
        give(a);
        // One value given: it waits in the cache, the list is empty.
        assert_eq!(Buf::shelf().with(|s| s.borrow().len()), 0);
        assert_eq!(shelved::<Buf>(), (1, 100));
        give(b);
        // The second takes the cache; the first moved to the list.
        assert_eq!(Buf::shelf().with(|s| s.borrow().len()), 1);
        give(big);
        // Too big for the cache: straight to the list.
        assert_eq!(shelved::<Buf>(), (3, 1800));
        // Taken back most recent first (the cache, then the list from its end).
        assert_eq!(take::<Buf>().unwrap().0.as_ptr(), pb);
        assert_eq!(take::<Buf>().unwrap().0.as_ptr(), pbig);
        assert_eq!(take::<Buf>().unwrap().0.as_ptr(), pa);
        assert!(take::<Buf>().is_none());
        assert_eq!(shelved::<Buf>(), (0, 0));
        // A value that holds nothing is not kept, not even in an empty cache.
        give(Buf(Vec::new()));
        assert_eq!(shelved::<Buf>(), (0, 0));
    }

    #[test]
    fn oversized_and_surplus_values_are_freed() {
        let mut s: Shelf<Vec<u8>> = Shelf::new(2, 1000, 600);
        assert!(
            s.put(Vec::with_capacity(700)).is_some(),
            "larger than max_item"
        );
        assert!(s.put(Vec::with_capacity(500)).is_none());
        assert!(s.put(Vec::with_capacity(501)).is_some(), "past max_bytes");
        assert!(s.put(Vec::with_capacity(400)).is_none());
        assert!(s.put(Vec::with_capacity(10)).is_some(), "past max_items");
        assert_eq!((s.len(), s.bytes()), (2, 900));
        let big = s.take_if(|v| v.capacity() >= 450).unwrap();
        assert_eq!(big.capacity(), 500);
        assert!(s.take_if(|v| v.capacity() >= 450).is_none());
        assert_eq!((s.len(), s.bytes()), (1, 400));
    }
}
