//! Running many futures at once in one task: at most `limit` in flight,
//! outputs in input order. (The runtime is single-threaded; this is what
//! lets one promoter wait on many databases at the same time.)

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// A future the join runs.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `futures` with at most `limit` (at least 1) polled at a time.
pub async fn bounded<'a, T>(futures: Vec<Boxed<'a, T>>, limit: usize) -> Vec<T> {
    let total = futures.len();
    let mut waiting = futures.into_iter().enumerate();
    let mut running: Vec<(usize, Boxed<'a, T>)> = Vec::new();
    let mut out: Vec<Option<T>> = (0..total).map(|_| None).collect();
    loop {
        while running.len() < limit.max(1) {
            match waiting.next() {
                Some(f) => running.push(f),
                None => break,
            }
        }
        if running.is_empty() {
            break;
        }
        let (i, value) = next_done(&mut running).await;
        out[i] = Some(value);
    }
    out.into_iter()
        .map(|v| v.expect("every future ran to completion"))
        .collect()
}

/// Waits for the first of `running` to finish, removes it and returns its
/// key and output. `running` must not be empty.
pub async fn next_done<'a, K: Copy, T>(running: &mut Vec<(K, Boxed<'a, T>)>) -> (K, T) {
    debug_assert!(!running.is_empty());
    std::future::poll_fn(|cx| {
        for k in 0..running.len() {
            if let Poll::Ready(v) = running[k].1.as_mut().poll(cx) {
                let (key, _) = running.swap_remove(k);
                return Poll::Ready((key, v));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_back_in_input_order_with_at_most_limit_running() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let running = std::cell::Cell::new(0usize);
        let peak = std::cell::Cell::new(0usize);
        let futures: Vec<Pin<Box<dyn Future<Output = usize> + '_>>> = (0..10usize)
            .map(|i| {
                let (running, peak) = (&running, &peak);
                Box::pin(async move {
                    running.set(running.get() + 1);
                    peak.set(peak.get().max(running.get()));
                    // Later futures finish first.
                    tokio::time::sleep(std::time::Duration::from_millis(20 - 2 * i as u64)).await;
                    running.set(running.get() - 1);
                    i * 10
                }) as Pin<Box<dyn Future<Output = usize> + '_>>
            })
            .collect();
        let out = rt.block_on(bounded(futures, 3));
        assert_eq!(out, (0..10).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(peak.get(), 3);
    }
}
