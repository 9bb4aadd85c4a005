//! Size limits for the small files promoter reads whole, and a nesting
//! limit for YAML: a 6 GB "signature" or a changeset.yaml of 400,000 `[`
//! must be refused at once, naming the file, not read into memory or parsed
//! for minutes. Scripts and other bundle files have no limit: they stream.

/// A detached signature (a few hundred bytes; certificates with many
/// subkeys make it no larger).
pub const SIGNATURE: u64 = 64 * 1024;
/// An approval statement.
pub const APPROVAL: u64 = 16 * 1024;
/// `SHA256SUMS`: about 100 bytes a file, so room for tens of thousands of files.
pub const MANIFEST: u64 = 8 * 1024 * 1024;
/// `changeset.yaml`.
pub const CHANGESET_YAML: u64 = 64 * 1024;
/// `environments.yaml`.
pub const ENVIRONMENTS_YAML: u64 = 1024 * 1024;
/// One keyring file (a certificate with its signatures).
pub const CERTIFICATE: u64 = 1024 * 1024;
/// An exported receipt.
pub const RECEIPT: u64 = 1024 * 1024;
/// Any other small file read whole from git (policy signatures, policy text).
pub const SMALL_FILE: u64 = 1024 * 1024;
/// A fleet's `targets_file` (a line a target: room for some ten thousand).
pub const TARGETS_FILE: u64 = 4 * 1024 * 1024;
/// A masking spec (`masking.yaml`).
pub const MASKING_SPEC: u64 = 1024 * 1024;
/// Ledger rows `promoter report` shows per environment (the newest; `promoter ledger` has all).
pub const REPORT_LEDGER_ROWS: usize = 200;
/// Changesets `promoter report` describes in full (the newest; the matrix has all).
pub const REPORT_CHANGESETS: usize = 300;
/// Audit problems `promoter report` lists per environment (`promoter audit` lists all).
pub const REPORT_PROBLEMS: usize = 100;
/// How deep YAML flow collections (`[`, `{`) may nest.
pub const YAML_DEPTH: usize = 32;

/// The limit of a file in a bundle's `signatures/`: statements or signatures.
pub fn in_signatures_dir(name: &str) -> u64 {
    if name.ends_with(".txt") {
        APPROVAL
    } else {
        SIGNATURE
    }
}

/// `Err` naming the file when `size` exceeds `limit`.
pub fn check(what: &str, size: u64, limit: u64) -> Result<(), String> {
    within(size, limit).map_err(|e| format!("{what}: {e}"))
}

/// [`check`] for a caller whose error already names the file.
pub fn within(size: u64, limit: u64) -> Result<(), String> {
    if size > limit {
        Err(format!(
            "{size} bytes, more than the {limit} bytes allowed for it (see docs/formats.md)"
        ))
    } else {
        Ok(())
    }
}

/// Why a small file was not read whole.
#[derive(Debug)]
pub enum ReadError {
    /// Over its limit: the message names the file, its size and the limit.
    TooLarge(String),
    Io(std::io::Error),
}

/// Reads `path` whole if it is at most `limit` bytes (`shown` names it in
/// the message), with its metadata: one open and one `fstat`, its size
/// checked before it is read, and never a byte read past the limit,
/// whatever the size said (a file that grew since, a device or a pipe,
/// which report none).
pub fn read_whole(
    path: &std::path::Path,
    shown: &str,
    limit: u64,
) -> Result<(Vec<u8>, std::fs::Metadata), ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    check(shown, meta.len(), limit).map_err(ReadError::TooLarge)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    check(shown, bytes.len() as u64, limit).map_err(ReadError::TooLarge)?;
    Ok((bytes, meta))
}

/// [`read_whole`], the errors as text naming the file.
pub fn read(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    let shown = path.display().to_string();
    read_whole(path, &shown, limit)
        .map(|(bytes, _)| bytes)
        .map_err(|e| match e {
            ReadError::TooLarge(message) => message,
            ReadError::Io(e) => format!("{shown}: {e}"),
        })
}

/// `Err` when YAML flow collections nest deeper than [`YAML_DEPTH`], counted
/// outside quotes and comments: the parser would recurse that deep.
pub fn yaml_depth(text: &str) -> Result<(), String> {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    for c in text.chars() {
        if comment {
            comment = c != '\n';
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                max = max.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if max > YAML_DEPTH {
            return Err(format!("nests deeper than {YAML_DEPTH} levels of [ and {{"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_file_and_the_numbers() {
        assert!(check("x.asc", 10, SIGNATURE).is_ok());
        let e = check("signatures/x.asc", 6_000_000_000, SIGNATURE).unwrap_err();
        assert!(
            e.contains("signatures/x.asc: 6000000000 bytes, more than the 65536"),
            "{e}"
        );
    }

    #[test]
    fn yaml_nesting_is_bounded_outside_quotes_and_comments() {
        assert!(yaml_depth("require: { developer: 1 }\nlist: [[1], [2]]\n").is_ok());
        assert!(yaml_depth(&"[".repeat(400_000)).is_err());
        assert!(
            yaml_depth(&format!(
                "a: '{}'\n# {}\n",
                "[".repeat(100),
                "{".repeat(100)
            ))
            .is_ok()
        );
        assert!(yaml_depth(&format!("{}{}", "[".repeat(32), "]".repeat(32))).is_ok());
        assert!(yaml_depth(&"[".repeat(33)).is_err());
    }
}
