//! The timing loop of the side-by-side benchmarks (their own loop, not criterion's, so that
//! two variants are measured in one run and compared as a ratio).

use std::time::{Duration, Instant};

/// Median of `samples` timings of `f` (each the mean of `batch` calls), after one batch of
/// warm-up.
pub fn median(samples: usize, batch: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..batch {
        f();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed() / batch
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
