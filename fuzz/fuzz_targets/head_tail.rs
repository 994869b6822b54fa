//! `HeadTail` against a `Vec` model: head, tail, overlap, dropped and reassembly.
#![no_main]

use jisr_fuzz::Input;
use jisr_fuzz::buffer::HeadTail;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let h = usize::from(input.byte() % 48);
    let t = usize::from(input.byte() % 48);
    let mut cap = HeadTail::new(h, t);
    let mut model: Vec<u8> = Vec::new();
    while !input.rest.is_empty() {
        let op = input.byte();
        if op == 0 {
            cap.clear();
            model.clear();
        } else {
            let chunk = input.take(usize::from(op % 64));
            cap.write(chunk);
            model.extend_from_slice(chunk);
        }
        let head = &model[..model.len().min(h)];
        let tail_start = model.len().saturating_sub(t);
        assert_eq!(cap.head(), head);
        let (a, b) = cap.tail();
        assert_eq!([a, b].concat(), &model[tail_start..]);
        assert_eq!(cap.total_written(), model.len() as u64);
        assert_eq!(cap.dropped(), tail_start.saturating_sub(head.len()) as u64);
        assert_eq!(cap.overlap(), head.len().saturating_sub(tail_start));
        let (a, b) = cap.tail_after_head();
        let after = [a, b].concat();
        assert_eq!(after, &model[tail_start.max(head.len())..]);
        if cap.is_complete() {
            assert_eq!([head, &after].concat(), model);
        }
    }
});
