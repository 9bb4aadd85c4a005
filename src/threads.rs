//! Work spread over the machine's cores with scoped threads, results in
//! the order of the input (no pool: a scope per call).

/// `f` of every item, in order, computed on as many threads as there are
/// cores, up to 8 (on this one alone for a few items).
pub fn parallel_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || items.len() < 16 {
        return items.iter().map(f).collect();
    }
    let size = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(size)
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<U>>()))
            .collect();
        handles.into_iter().flat_map(join_thread).collect()
    })
}

/// Waits for a scoped thread's result (its panic becomes this thread's).
pub fn join_thread<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::parallel_map;

    #[test]
    fn a_parallel_map_keeps_the_order_of_its_items() {
        for n in [0, 1, 15, 16, 17, 31, 100, 1001] {
            let items: Vec<usize> = (0..n).collect();
            let thread = std::thread::current().id();
            let out = parallel_map(&items, |i| (i * 3, std::thread::current().id() == thread));
            let values: Vec<usize> = out.iter().map(|(v, _)| *v).collect();
            assert_eq!(
                values,
                items.iter().map(|i| i * 3).collect::<Vec<_>>(),
                "{n} items"
            );
            if n < 16 {
                assert!(
                    out.iter().all(|(_, here)| *here),
                    "{n} items stay on this thread"
                );
            }
        }
    }
}
