//! Row-parallel element-wise work: the norms, RoPE and activation functions between the matmuls
//! of a prefill batch. Each is cheap per token but runs over every token of the batch; left on
//! the calling thread they are the serial part that keeps two threads from being twice as fast
//! as one (in Gemma-3-270M's 512-token prefill, about a tenth of the single-thread time).

use std::ops::Range;

use crate::disjoint::DisjointMut;
use crate::pool::ThreadPool;

/// The work [`par_rows`] runs: a range of rows and, per buffer, exactly those rows.
pub type RowsFn<'a, const N: usize> = dyn Fn(Range<usize>, [&mut [f32]; N]) + Sync + 'a;

/// Below this many elements in the first buffer the work runs on the calling thread: waking the
/// pool costs more than it saves (a decode step's single token, a small batch).
const MIN_PARALLEL_ELEMS: usize = 16 * 1024;

/// Calls `f(rows, [bufs' rows])` for consecutive ranges of `0..n_rows` that together cover it,
/// on the pool's threads. Buffer `i` is `(data, width)`: row `r` is `data[r * width..(r + 1) *
/// width]`, and `f` gets exactly the rows of its range of every buffer (so `rows.start` is row 0
/// of each slice it gets). With one thread, a small batch or a single row, `f` runs once over
/// everything.
///
/// # Panics
/// If a buffer is shorter than `n_rows * width`, or if `f` panics.
pub fn par_rows<const N: usize>(
    pool: &ThreadPool,
    n_rows: usize,
    bufs: [(&mut [f32], usize); N],
    f: &RowsFn<'_, N>,
) {
    for (i, (data, width)) in bufs.iter().enumerate() {
        assert!(data.len() >= n_rows * width, "par_rows: buffer {i} holds {} values, {n_rows} rows of {width} need {}", data.len(), n_rows * width);
    }
    let elems = bufs.first().map_or(0, |(_, w)| n_rows * w);
    let n_tasks = (pool.n_threads() * 2).min(n_rows);
    if n_tasks <= 1 || elems < MIN_PARALLEL_ELEMS {
        let slices = bufs.map(|(data, width)| &mut data[..n_rows * width]);
        f(0..n_rows, slices);
        return;
    }
    let widths = bufs.each_ref().map(|(_, w)| *w);
    let shared = bufs.map(|(data, _)| DisjointMut::new(data));
    let per_task = n_rows.div_ceil(n_tasks);
    pool.run(n_rows.div_ceil(per_task), &|task| {
        let rows = task * per_task..((task + 1) * per_task).min(n_rows);
        // SAFETY: each task gets its own range of rows, so its slices of every buffer are
        // disjoint from every other task's; the lengths were checked above.
        let slices = std::array::from_fn(|i| unsafe { shared[i].slice(rows.start * widths[i], rows.len() * widths[i]) });
        f(rows, slices);
    });
}
