//! `Ring` against a `Vec` model: contents, totals and copies after every write.
#![no_main]

use jisr_fuzz::Input;
use jisr_fuzz::buffer::Ring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cap = usize::from(input.byte() % 80);
    let mut ring = Ring::new(cap);
    let mut model: Vec<u8> = Vec::new();
    while !input.rest.is_empty() {
        let op = input.byte();
        match op % 8 {
            0 => {
                ring.clear();
                model.clear();
            }
            1 => {
                // A write larger than the capacity, built from the op byte.
                let chunk = vec![op; cap + usize::from(input.byte() % 8)];
                ring.write(&chunk);
                model.extend_from_slice(&chunk);
            }
            _ => {
                let chunk = input.take(usize::from(op / 8));
                ring.write(chunk);
                model.extend_from_slice(chunk);
            }
        }
        let kept = &model[model.len().saturating_sub(cap)..];
        let (a, b) = ring.as_slices();
        assert_eq!([a, b].concat(), kept);
        // Reading does not change anything.
        assert_eq!(ring.as_slices(), (a, b));
        assert_eq!(ring.len(), kept.len());
        assert_eq!(ring.total_written(), model.len() as u64);
        assert_eq!(ring.dropped(), (model.len() - kept.len()) as u64);
        let mut out = vec![0xAA; usize::from(input.byte() % 96)];
        let n = ring.copy_to(&mut out);
        assert_eq!(&out[..n], &kept[kept.len() - n..]);
        assert_eq!(n, out.len().min(kept.len()));
    }
});
