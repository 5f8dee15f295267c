//! Benchmarks of the runtime (to come).
fn main() {}
