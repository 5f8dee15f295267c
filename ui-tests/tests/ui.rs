//! Every compile error `flow!`, `#[node]` and `#[derive(Action)]` promise, one
//! mistake per file in `fail/` with the expected message in its `.stderr`; and
//! valid but tricky flows in `pass/`.
//!
//! Refresh the snapshots with `TRYBUILD=overwrite cargo test -p minllm-ui-tests`,
//! then read every changed message as a user would before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/fail/*.rs");
    t.pass("tests/pass/*.rs");
}
