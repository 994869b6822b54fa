//! Compile errors users meet first, pinned: a handler of the wrong shape must be told which
//! shapes are accepted. The expected messages are the `.stderr` files beside each case in
//! `tests/ui/`; regenerate them with `TRYBUILD=overwrite cargo test -p jisr --test ui`.

#[test]
fn handler_shape_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
