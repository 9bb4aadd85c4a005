//! The splitter and the script checks must never panic, whatever the bytes,
//! and must account for every byte of a statement it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promoter::changeset::TransactionMode;
use promoter::sql::{Item, Splitter, check_script};

fuzz_target!(|data: &[u8]| {
    let mut splitter = Splitter::new(data);
    let mut last_line = 0;
    loop {
        match splitter.next_item() {
            Ok(Some(Item::Statement(s))) => {
                assert!(s.line >= last_line, "statements go forward");
                assert!(s.line >= 1 && s.column >= 1);
                // psql sends whatever its buffer holds, never an empty one.
                assert!(!s.text.is_empty());
                last_line = s.line;
                if s.is_copy_from_stdin() {
                    while let Ok(Some(_)) = splitter.next_copy_chunk(1024) {}
                }
            }
            Ok(Some(Item::Meta(m))) => assert!(m.line >= 1),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = check_script("fuzz.sql", data, TransactionMode::PerChangeset);
});
