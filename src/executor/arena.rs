//! Per-stream storage for the header values a handler reads.
//!
//! Envoy's header and attribute buffers are valid only until the end of the current hook or
//! until a setter runs, and a local reply replaces the response header map. A handler's view may
//! outlive all of that (it can be kept across `.await`, a reply or a header change), so the API
//! never hands out Envoy's memory: each value is copied once into this arena, which belongs to
//! the stream slot and is only reset when the slot is reused — after every future of the stream
//! (and so every view) is gone.
//!
//! An arena that never copied holds no memory. Its blocks come as one chain from the worker's
//! shelf of spare chains (`executor::spare`) on the first copy of a stream and go back to it (at
//! most [`RETAINED`] bytes of them) when the slot is reset, so the steady state allocates nothing
//! and a stream that copies nothing holds nothing. One exception makes the common case free: a
//! chain of exactly one first block ([`FIRST_BLOCK`] bytes) stays with the slot, rewound, for its
//! next stream, so an idle slot holds at most that block and its one-entry list. A value equal
//! to one of the last few copied is not copied again, so reading the same header in a loop does
//! not grow the arena.

use crate::executor::spare::{self, Shelf, Spare};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::thread::LocalKey;

/// First block size: what a stream that reads a few header values holds for them.
const FIRST_BLOCK: usize = 256;
/// Largest block size a growing arena moves to (larger values get a block of their own).
const MAX_BLOCK: usize = 64 * 1024;
/// Bytes of blocks a chain keeps when it goes back to the shelf (the rest is freed).
pub(crate) const RETAINED: usize = 8 * 1024;
/// Most spare chains a worker keeps.
pub(crate) const SHELF_CHAINS: usize = 64;
/// Most bytes of spare chains a worker keeps.
pub(crate) const SHELF_BYTES: usize = 256 * 1024;
/// Most bytes one stream may keep; a handler that reads more header values than this (all
/// distinct) fails with a panic, answered like any handler panic.
pub(crate) const MAX_PER_STREAM: usize = 1024 * 1024;
/// How many recent copies are compared before copying again.
const RECENT: usize = 4;

/// One block: memory owned by the arena, written once per byte and then only read.
struct Block {
    ptr: NonNull<u8>,
    len: usize,
}

impl Block {
    fn new(len: usize) -> Block {
        let b: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let raw = Box::into_raw(b);
        // SAFETY: `Box::into_raw` never returns null.
        let ptr = unsafe { NonNull::new_unchecked(raw as *mut u8) };
        Block { ptr, len }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let raw = core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a `Box<[u8]>` of this length in
        // `Block::new`, and are released exactly once, here.
        drop(unsafe { Box::from_raw(raw) });
    }
}

/// The blocks of one arena, in the order they are filled; what waits on the shelf between
/// streams.
#[derive(Default)]
pub(crate) struct Chain(Vec<Block>);

impl Chain {
    /// Bytes of the blocks (no walk for the common chain of one block).
    #[inline]
    fn block_bytes(&self) -> usize {
        match self.0.as_slice() {
            [one] => one.len,
            blocks => blocks.iter().map(|b| b.len).sum(),
        }
    }
}

/// Largest chain a worker keeps (`RETAINED` bytes of blocks and their list).
const MAX_CHAIN: usize = RETAINED + 1024;

impl Spare for Chain {
    #[inline]
    fn held(&self) -> usize {
        self.block_bytes() + self.0.capacity() * size_of::<Block>()
    }
    #[inline]
    fn recycle(&mut self) {}
    fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>> {
        thread_local! {
            // The list behind the cache: one chain and `MAX_CHAIN` bytes less, so both
            // together keep at most `SHELF_CHAINS` chains and `SHELF_BYTES`.
            static CHAINS: RefCell<Shelf<Chain>> = const {
                RefCell::new(Shelf::new(SHELF_CHAINS - 1, SHELF_BYTES - MAX_CHAIN, MAX_CHAIN))
            };
        }
        &CHAINS
    }
    #[inline]
    fn cache() -> Option<&'static LocalKey<Cell<Option<Self>>>> {
        thread_local! {
            static CACHE: Cell<Option<Chain>> = const { Cell::new(None) };
        }
        Some(&CACHE)
    }
    const CACHED: usize = MAX_CHAIN;
}

/// The arena. Hands out `&[u8]` tied to `&self`; resetting needs `&mut self`, so no copy handed
/// out can outlive a reset.
pub(crate) struct Arena {
    blocks: RefCell<Chain>,
    /// Index of the block being filled.
    current: Cell<usize>,
    /// The unused bytes of the block being filled: `left` bytes from `next` (null and 0 before
    /// a block is taken).
    next: Cell<*mut u8>,
    left: Cell<usize>,
    /// Bytes handed out in this stream.
    total: Cell<usize>,
    /// Bytes of blocks held (reset keeps at most `RETAINED`).
    held: Cell<usize>,
    /// The last copies (start, length), a ring written at `recent_at`; unused entries have
    /// length 0 (never a copy's: empty values are not copied).
    recent: [Cell<(*const u8, usize)>; RECENT],
    recent_at: Cell<usize>,
}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            blocks: RefCell::new(Chain(Vec::new())),
            current: Cell::new(0),
            next: Cell::new(core::ptr::null_mut()),
            left: Cell::new(0),
            total: Cell::new(0),
            held: Cell::new(0),
            recent: [const { Cell::new((core::ptr::null(), 0)) }; RECENT],
            recent_at: Cell::new(0),
        }
    }
}

// SAFETY: the blocks are plain heap memory owned by the arena (like a `Vec<Box<[u8]>>`); moving
// the arena to another thread moves that ownership, and the cached pointers only point into
// those blocks. `Arena` is not `Sync` (its cells are not).
unsafe impl Send for Arena {}

impl Arena {
    /// Copies `bytes` into the arena and returns the copy, valid as long as `&self` is borrowed.
    #[inline]
    pub(crate) fn keep<'s>(&'s self, bytes: &[u8]) -> &'s [u8] {
        let n = bytes.len();
        if n == 0 {
            return &[];
        }
        for r in &self.recent {
            let (addr, len) = r.get();
            if len == n {
                // SAFETY: an entry of non-zero length is a copy handed out earlier in this
                // stream; its bytes stay valid and unchanged until `reset`, which needs
                // `&mut self`.
                let old = unsafe { core::slice::from_raw_parts(addr, len) };
                if old == bytes {
                    return old;
                }
            }
        }
        let total = self.total.get() + n;
        assert!(
            total <= MAX_PER_STREAM,
            "jisr: a handler kept more than {MAX_PER_STREAM} bytes of header values in one stream"
        );
        self.total.set(total);
        let (next, left) = (self.next.get(), self.left.get());
        let dst = if left >= n {
            // SAFETY: the `left` bytes from `next` are the unused end of the current block, so
            // `next + n` stays inside (or one past) that allocation.
            self.next.set(unsafe { next.add(n) });
            self.left.set(left - n);
            next
        } else {
            self.reserve(n)
        };
        // SAFETY: `dst` starts `n` unused bytes of a block that no earlier copy covers (the
        // free range only shrinks until `reset`); `bytes` is a different allocation (Envoy's or
        // the caller's), so the ranges do not overlap.
        unsafe { copy_small(bytes.as_ptr(), dst, n) };
        // SAFETY: the bytes were just written and are never written again before `reset`.
        let out = unsafe { core::slice::from_raw_parts(dst as *const u8, n) };
        let at = self.recent_at.get();
        self.recent[at % RECENT].set((out.as_ptr(), n));
        self.recent_at.set((at + 1) % RECENT);
        out
    }

    /// Finds `n` unused bytes past the current block (the next kept block with room, or a new
    /// one), makes it current and returns where the bytes start.
    #[cold]
    #[inline(never)]
    fn reserve(&self, n: usize) -> *mut u8 {
        let mut chain = self.blocks.borrow_mut();
        if chain.0.is_empty() {
            // The stream's first copy: blocks from the shelf, if it has any.
            if let Some(spare) = spare::take::<Chain>() {
                self.held.set(spare.block_bytes());
                *chain = spare;
            }
        }
        let blocks = &mut chain.0;
        // The current block is too small for `n` (or there is none yet).
        let mut idx = if self.next.get().is_null() {
            0
        } else {
            self.current.get() + 1
        };
        loop {
            match blocks.get(idx) {
                Some(b) if b.len >= n => break,
                Some(_) => idx += 1,
                None => {
                    let grow = blocks
                        .last()
                        .map_or(FIRST_BLOCK, |b| (b.len * 2).min(MAX_BLOCK));
                    let len = grow.max(n);
                    if blocks.len() == blocks.capacity() {
                        // Doubling from one entry: most streams fill a single block, and its
                        // list then costs one entry, not the four `push` would reserve.
                        blocks.reserve_exact(blocks.len().max(1));
                    }
                    blocks.push(Block::new(len));
                    self.held.set(self.held.get() + len);
                    idx = blocks.len() - 1;
                }
            }
        }
        let block = &blocks[idx];
        let start = block.ptr.as_ptr();
        self.current.set(idx);
        // SAFETY: `n <= block.len`, so the offset stays inside (or one past) the block.
        self.next.set(unsafe { start.add(n) });
        self.left.set(block.len - n);
        start
    }

    /// Forgets every copy (the caller holds `&mut`, so none is borrowed). An arena that grew
    /// exactly its first block ([`FIRST_BLOCK`] bytes, what a stream reading a few header values
    /// takes) keeps it for the slot's next stream, rewound; any other chain goes back to the
    /// worker's shelf (at most [`RETAINED`] bytes of it) and the arena holds nothing.
    #[inline]
    pub(crate) fn reset(&mut self) {
        if *self.total.get_mut() == 0 {
            return;
        }
        *self.total.get_mut() = 0;
        for r in &mut self.recent {
            *r.get_mut() = (core::ptr::null(), 0);
        }
        *self.recent_at.get_mut() = 0;
        if let [first] = self.blocks.get_mut().0.as_slice() {
            if first.len == FIRST_BLOCK {
                // The slot keeps one first block: no shelf round trip for the next stream.
                *self.next.get_mut() = first.ptr.as_ptr();
                *self.left.get_mut() = FIRST_BLOCK;
                *self.current.get_mut() = 0;
                return;
            }
        }
        self.give_back();
    }

    /// Gives the chain (at most [`RETAINED`] bytes of it) to the worker's shelf.
    #[cold]
    #[inline(never)]
    fn give_back(&mut self) {
        if *self.held.get_mut() > RETAINED {
            self.shrink();
        }
        spare::give(core::mem::take(self.blocks.get_mut()));
        *self.held.get_mut() = 0;
        *self.current.get_mut() = 0;
        *self.next.get_mut() = core::ptr::null_mut();
        *self.left.get_mut() = 0;
    }

    /// Drops blocks beyond the first [`RETAINED`] bytes.
    #[cold]
    #[inline(never)]
    fn shrink(&mut self) {
        let blocks = &mut self.blocks.get_mut().0;
        let mut kept = 0;
        let mut keep_n = 0;
        for b in blocks.iter() {
            if kept + b.len > RETAINED {
                break;
            }
            kept += b.len;
            keep_n += 1;
        }
        blocks.truncate(keep_n);
        *self.held.get_mut() = kept;
    }

    /// Bytes of blocks held.
    #[cfg(feature = "testing")]
    pub(crate) fn capacity(&self) -> usize {
        debug_assert_eq!(self.held.get(), self.blocks.borrow().block_bytes());
        self.held.get()
    }
}

/// Copies `n` bytes from `src` to `dst` without a call for short values (most header values).
///
/// # Safety
/// `src` is valid for reading and `dst` for writing `n` bytes, and the ranges do not overlap.
#[inline]
pub(crate) unsafe fn copy_small(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: every access below stays within the first `n` bytes of `src` and `dst` (valid
    // and disjoint, guaranteed by the caller); unaligned accesses are explicitly unaligned.
    unsafe {
        if (8..=16).contains(&n) {
            // Two overlapping words cover 8..=16 bytes.
            let a = core::ptr::read_unaligned(src as *const u64);
            let b = core::ptr::read_unaligned(src.add(n - 8) as *const u64);
            core::ptr::write_unaligned(dst as *mut u64, a);
            core::ptr::write_unaligned(dst.add(n - 8) as *mut u64, b);
        } else if (4..8).contains(&n) {
            let a = core::ptr::read_unaligned(src as *const u32);
            let b = core::ptr::read_unaligned(src.add(n - 4) as *const u32);
            core::ptr::write_unaligned(dst as *mut u32, a);
            core::ptr::write_unaligned(dst.add(n - 4) as *mut u32, b);
        } else {
            core::ptr::copy_nonoverlapping(src, dst, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length a short copy special-cases, and its neighbours, copies exactly those bytes.
    #[test]
    fn short_copies_copy_exactly_n_bytes() {
        let src: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for n in 0..=64 {
            let mut dst = [0xEEu8; 80];
            // SAFETY: `src` has 64 readable bytes and `dst` 80 writable ones, disjoint.
            unsafe { copy_small(src.as_ptr(), dst.as_mut_ptr(), n) };
            assert_eq!(&dst[..n], &src[..n], "n = {n}");
            assert!(
                dst[n..].iter().all(|&b| b == 0xEE),
                "n = {n}: wrote past the end"
            );
        }
    }

    #[test]
    fn copies_stay_put_while_the_arena_grows() {
        let arena = Arena::default();
        let mut views = Vec::new();
        for i in 0..2000u32 {
            let v = format!("value-{i}-{}", "x".repeat((i % 97) as usize));
            views.push((v.clone(), arena.keep(v.as_bytes())));
        }
        for (want, got) in &views {
            assert_eq!(want.as_bytes(), *got);
        }
        assert!(arena.capacity() > RETAINED);
    }

    /// Empties the thread's shelf of chains (tests may share a thread).
    fn empty_shelf() {
        while spare::take::<Chain>().is_some() {}
    }

    #[test]
    fn repeated_values_are_not_copied_again() {
        empty_shelf();
        let arena = Arena::default();
        let a = arena.keep(b"application/json");
        for _ in 0..10_000 {
            assert_eq!(arena.keep(b"application/json").as_ptr(), a.as_ptr());
        }
        assert_eq!(arena.capacity(), FIRST_BLOCK);
    }

    #[test]
    fn reset_keeps_a_bounded_amount() {
        let mut arena = Arena::default();
        for i in 0..100u32 {
            arena.keep(&vec![i as u8; 5000]);
        }
        arena.reset();
        // The arena holds nothing; its shelf took at most `RETAINED` bytes of blocks.
        assert_eq!(arena.capacity(), 0);
        let (chains, bytes) = spare::shelved::<Chain>();
        assert!(chains <= SHELF_CHAINS && bytes <= SHELF_BYTES);
        let chain = spare::take::<Chain>().expect("the chain went to the shelf");
        assert!(chain.block_bytes() <= RETAINED);
        spare::give(chain);
        assert_eq!(arena.keep(b"abc"), b"abc");
        // The next stream's first copy took the chain back from the shelf.
        assert!(arena.capacity() > 0 && arena.capacity() <= RETAINED);
        assert_eq!(
            spare::shelved::<Chain>(),
            (chains - 1, bytes - spare_held(&arena))
        );
    }

    /// What the arena's chain counts on a shelf.
    fn spare_held(arena: &Arena) -> usize {
        arena.blocks.borrow().held()
    }

    #[test]
    fn a_one_block_arena_keeps_its_block_rewound() {
        empty_shelf();
        let mut arena = Arena::default();
        let first = arena.keep(b"secret").as_ptr();
        assert_eq!(arena.capacity(), FIRST_BLOCK);
        for round in 0..3u8 {
            arena.reset();
            // Kept, not shelved: the next stream copies into the same block from its start.
            assert_eq!(arena.capacity(), FIRST_BLOCK);
            assert_eq!(spare::shelved::<Chain>(), (0, 0));
            let v = arena.keep(&[round; 10]);
            assert_eq!((v, v.as_ptr()), (&[round; 10][..], first));
            // The ring of recent copies was forgotten: an old value is copied again.
            assert_eq!(arena.keep(b"secret"), b"secret");
        }
        // A second block: the whole chain goes back to the shelf, the arena holds nothing.
        arena.keep(&[9; FIRST_BLOCK]);
        arena.reset();
        assert_eq!(arena.capacity(), 0);
        assert_eq!(spare::shelved::<Chain>().0, 1);
        empty_shelf();
    }

    #[test]
    fn two_arenas_never_share_a_block() {
        empty_shelf();
        let mut a = Arena::default();
        let mut b = Arena::default();
        // Values larger than a first block, so every reset gives the chain to the shelf (a chain of
        // one first block would stay with its arena).
        const N: usize = FIRST_BLOCK + 44;
        for round in 0..4u8 {
            let va = a.keep(&[round; N]).as_ptr();
            let vb = b.keep(&[round + 100; N]).as_ptr();
            let ra = a
                .blocks
                .borrow()
                .0
                .iter()
                .map(|x| x.ptr)
                .collect::<Vec<_>>();
            let rb = b
                .blocks
                .borrow()
                .0
                .iter()
                .map(|x| x.ptr)
                .collect::<Vec<_>>();
            assert!(ra.iter().all(|p| !rb.contains(p)), "round {round}");
            assert_ne!(va, vb);
            assert_eq!(a.keep(&[round; N]), &[round; N][..]);
            assert_eq!(b.keep(&[round + 100; N]), &[round + 100; N][..]);
            // Reset in turn: the shelf hands each chain to one arena at a time.
            if round % 2 == 0 {
                a.reset();
            } else {
                b.reset();
            }
        }
    }

    #[test]
    fn every_short_length_is_copied_exactly_across_resets() {
        let mut arena = Arena::default();
        let src: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for round in 0..3 {
            let mut views = Vec::new();
            for n in 1..=src.len() {
                for start in 0..3 {
                    let want = &src[start..(start + n).min(src.len())];
                    views.push((want, arena.keep(want)));
                }
            }
            for (want, got) in &views {
                assert_eq!(want, got, "round {round}");
            }
            drop(views);
            arena.reset();
            assert_eq!(arena.capacity(), 0);
        }
    }

    #[test]
    fn large_values_get_their_own_block() {
        let arena = Arena::default();
        let big = vec![7u8; 200_000];
        assert_eq!(arena.keep(&big), &big[..]);
        assert_eq!(arena.keep(b"small"), b"small");
    }
}
