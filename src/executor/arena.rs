//! Per-stream storage for the header values a handler reads.
//!
//! Envoy's header and attribute buffers are valid only until the end of the current hook or
//! until a setter runs, and a local reply replaces the response header map. A handler's view may
//! outlive all of that (it can be kept across `.await`, a reply or a header change), so the API
//! never hands out Envoy's memory: each value is copied once into this arena, which belongs to
//! the stream slot and is only reset when the slot is reused — after every future of the stream
//! (and so every view) is gone.
//!
//! Blocks are allocated on first use and kept for the slot's next streams (up to
//! [`RETAINED`] bytes), so the steady state allocates nothing. A value equal to one of the last
//! few copied is not copied again, so reading the same header in a loop does not grow the arena.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

/// First block size.
const FIRST_BLOCK: usize = 1024;
/// Largest block size a growing arena moves to (larger values get a block of their own).
const MAX_BLOCK: usize = 64 * 1024;
/// Bytes of blocks an idle slot keeps for its next stream.
pub(crate) const RETAINED: usize = 8 * 1024;
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

/// The arena. Hands out `&[u8]` tied to `&self`; resetting needs `&mut self`, so no copy handed
/// out can outlive a reset.
#[derive(Default)]
pub(crate) struct Arena {
    blocks: RefCell<Vec<Block>>,
    /// Index of the block being filled, and the bytes used in it.
    current: Cell<usize>,
    used: Cell<usize>,
    /// Bytes handed out in this stream.
    total: Cell<usize>,
    /// The last copies (address, length), newest first.
    recent: Cell<[(usize, usize); RECENT]>,
}

// SAFETY: the blocks are plain heap memory owned by the arena (like a `Vec<Box<[u8]>>`); moving
// the arena to another thread moves that ownership. `Arena` is not `Sync` (its cells are not).
unsafe impl Send for Arena {}

impl Arena {
    /// Copies `bytes` into the arena and returns the copy, valid as long as `&self` is borrowed.
    pub(crate) fn keep<'s>(&'s self, bytes: &[u8]) -> &'s [u8] {
        if bytes.is_empty() {
            return &[];
        }
        let recent = self.recent.get();
        for &(addr, len) in recent.iter().take_while(|r| r.1 != 0) {
            if len == bytes.len() {
                // SAFETY: a recent entry is a copy handed out earlier in this stream; its bytes
                // stay valid and unchanged until `reset`, which needs `&mut self`.
                let old = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
                if old == bytes {
                    return old;
                }
            }
        }
        let total = self.total.get() + bytes.len();
        assert!(
            total <= MAX_PER_STREAM,
            "jisr: a handler kept more than {MAX_PER_STREAM} bytes of header values in one stream"
        );
        self.total.set(total);
        let dst = self.reserve(bytes.len());
        // SAFETY: `reserve` returned `bytes.len()` bytes of a block that no earlier copy
        // covers (the used offset only grows until `reset`); `bytes` is a different allocation
        // (Envoy's or the caller's), so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        // SAFETY: the bytes were just written and are never written again before `reset`.
        let out = unsafe { core::slice::from_raw_parts(dst.as_ptr() as *const u8, bytes.len()) };
        let mut recent = recent;
        recent.rotate_right(1);
        recent[0] = (out.as_ptr() as usize, out.len());
        self.recent.set(recent);
        out
    }

    /// Finds `n` unused bytes, adding a block when the current one is full.
    fn reserve(&self, n: usize) -> NonNull<u8> {
        let mut blocks = self.blocks.borrow_mut();
        let mut idx = self.current.get();
        let mut used = self.used.get();
        loop {
            match blocks.get(idx) {
                Some(b) if b.len - used >= n => break,
                Some(_) => {
                    idx += 1;
                    used = 0;
                }
                None => {
                    let grow = blocks
                        .last()
                        .map_or(FIRST_BLOCK, |b| (b.len * 2).min(MAX_BLOCK));
                    blocks.push(Block::new(grow.max(n)));
                    idx = blocks.len() - 1;
                    used = 0;
                }
            }
        }
        let block = &blocks[idx];
        self.current.set(idx);
        self.used.set(used + n);
        // SAFETY: `used + n <= block.len`, so the offset stays inside the block's allocation.
        unsafe { NonNull::new_unchecked(block.ptr.as_ptr().add(used)) }
    }

    /// Forgets every copy (the caller holds `&mut`, so none is borrowed) and keeps at most
    /// [`RETAINED`] bytes of blocks for the next stream.
    pub(crate) fn reset(&mut self) {
        if *self.total.get_mut() == 0 {
            return;
        }
        let blocks = self.blocks.get_mut();
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
        *self.current.get_mut() = 0;
        *self.used.get_mut() = 0;
        *self.total.get_mut() = 0;
        *self.recent.get_mut() = [(0, 0); RECENT];
    }

    /// Bytes of blocks held.
    pub(crate) fn capacity(&self) -> usize {
        self.blocks.borrow().iter().map(|b| b.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn repeated_values_are_not_copied_again() {
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
        assert!(arena.capacity() <= RETAINED);
        assert_eq!(arena.keep(b"abc"), b"abc");
    }

    #[test]
    fn large_values_get_their_own_block() {
        let arena = Arena::default();
        let big = vec![7u8; 200_000];
        assert_eq!(arena.keep(&big), &big[..]);
        assert_eq!(arena.keep(b"small"), b"small");
    }
}
