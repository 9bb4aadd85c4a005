//! Ctrl-C and SIGTERM while changesets run. The handler is installed only
//! when the first changeset starts: before that nothing was written, and the
//! default action (the process ends, PostgreSQL drops its sessions and with
//! them the advisory lock) is right.
//!
//! Once installed, the first signal sets a flag that the executor reads
//! between statements, and wakes the engine, which asks PostgreSQL to cancel
//! the running statement. A second signal abandons the cleanup: the process
//! exits at once, and PostgreSQL rolls back whatever transaction was open
//! when the connection drops.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Exit code of an interrupted run (128 + SIGINT, as shells report it).
pub const EXIT_CODE: u8 = 130;

struct State {
    stop: AtomicBool,
    count: AtomicUsize,
    notify: Notify,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        stop: AtomicBool::new(false),
        count: AtomicUsize::new(0),
        notify: Notify::new(),
    })
}

/// The flag the executor checks between statements.
pub fn flag() -> &'static AtomicBool {
    &state().stop
}

/// Whether a signal has arrived.
pub fn requested() -> bool {
    flag().load(Ordering::SeqCst)
}

/// Installs the handlers (once; later calls do nothing). Must run inside
/// the tokio runtime.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tokio::spawn(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            loop {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => if r.is_err() { return },
                    _ = term.recv() => {}
                }
                let s = state();
                s.stop.store(true, Ordering::SeqCst);
                if s.count.fetch_add(1, Ordering::SeqCst) >= 1 {
                    crate::output::eprint(
                        "second interrupt: abandoning cleanup; PostgreSQL rolls back the open transaction when the connection closes, and `promoter status` shows what the ledger recorded",
                    );
                    std::process::exit(i32::from(EXIT_CODE));
                }
                s.notify.notify_waiters();
            }
        });
    });
}

/// Waits for the next signal (returns at once if one already arrived).
pub async fn wait() {
    let notified = state().notify.notified();
    tokio::pin!(notified);
    // Registered before the check, so a signal between the two is not lost.
    notified.as_mut().enable();
    if requested() {
        return;
    }
    notified.await;
}
