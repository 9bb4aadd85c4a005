//! The `SHA256SUMS` manifest and the bundle hash.
//!
//! Exact bytes: one line per file, `<64 lower-case hex><two spaces><name>\n`,
//! lines sorted byte-wise by name, no header, no trailing blank line. This is
//! the output of `sha256sum` run over the sorted file names, so
//! `sha256sum -c SHA256SUMS` passes inside a sealed bundle. The bundle hash is
//! the sha256 of exactly these bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// File name of the manifest inside a bundle.
pub const MANIFEST_FILE: &str = "SHA256SUMS";

/// A sha256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Hashes everything `reader` yields, 64 KiB at a time.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
        }
        Ok(Self(hasher.finalize().into()))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lower-case hex digits: the only form promoter writes,
    /// so anything else read back (upper case, padding, a short value) is a
    /// sign the value did not come from promoter.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// The first 12 hex digits, for tables.
    pub fn short(self) -> String {
        self.to_hex()[..12].to_owned()
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("not a sha256 digest (64 lower-case hex): {text:?}"))
        })
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A reader that hashes everything read through it: the bytes checked are
/// the bytes used, read once.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of everything read so far.
    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.hasher.finalize().into())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The hash that identifies a bundle: sha256 of the bytes of its `SHA256SUMS`.
pub fn bundle_hash(manifest_bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::of(manifest_bytes)
}

/// A parsed manifest: file name → digest, in byte-wise name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    entries: BTreeMap<String, Sha256Digest>,
}

/// Why a `SHA256SUMS` file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: expected `<64 lower-case hex digits>  <file name>`")]
    Malformed { line: usize },
    #[error("line {line}: `{name}` is listed twice")]
    Duplicate { line: usize, name: String },
    #[error("line {line}: `{name}` is out of order (lines must be sorted byte-wise by name)")]
    Unsorted { line: usize, name: String },
    #[error("the manifest must end with a line feed and use LF line endings only")]
    LineEndings,
    #[error("the manifest is empty")]
    Empty,
}

impl Manifest {
    /// Builds a manifest from file names and their digests.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Sha256Digest)>) -> Self {
        Self {
            entries: entries.into_iter().collect(),
        }
    }

    /// The exact bytes of `SHA256SUMS` for these entries.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 90);
        for (name, digest) in &self.entries {
            out.extend_from_slice(digest.to_hex().as_bytes());
            out.extend_from_slice(b"  ");
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Parses the bytes of a `SHA256SUMS`, strictly: only what `render` writes is accepted.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.is_empty() {
            return Err(ManifestError::Empty);
        }
        if !bytes.ends_with(b"\n") || bytes.contains(&b'\r') {
            return Err(ManifestError::LineEndings);
        }
        let mut entries = BTreeMap::new();
        let mut previous: Option<&[u8]> = None;
        for (index, line) in bytes[..bytes.len() - 1].split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            let malformed = || ManifestError::Malformed { line: line_no };
            if line.len() < 67 || &line[64..66] != b"  " {
                return Err(malformed());
            }
            let hex = std::str::from_utf8(&line[..64]).map_err(|_| malformed())?;
            let digest = Sha256Digest::from_hex(hex).ok_or_else(malformed)?;
            let name_bytes = &line[66..];
            let name = std::str::from_utf8(name_bytes).map_err(|_| malformed())?;
            if !super::validate_file_name(name) {
                return Err(malformed());
            }
            if let Some(prev) = previous {
                if prev == name_bytes {
                    return Err(ManifestError::Duplicate {
                        line: line_no,
                        name: name.to_owned(),
                    });
                }
                if prev > name_bytes {
                    return Err(ManifestError::Unsorted {
                        line: line_no,
                        name: name.to_owned(),
                    });
                }
            }
            previous = Some(name_bytes);
            entries.insert(name.to_owned(), digest);
        }
        Ok(Self { entries })
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, Sha256Digest)> {
        self.entries.iter().map(|(n, d)| (n.as_str(), *d))
    }

    pub fn get(&self, name: &str) -> Option<Sha256Digest> {
        self.entries.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Compares the manifest with the files actually present. Returns every
    /// difference; an empty list means the bundle is exactly what was sealed.
    pub fn check(&self, actual: &Manifest) -> Vec<FileProblem> {
        let mut missing: Vec<(&String, &Sha256Digest)> = Vec::new();
        let mut extra: Vec<(&String, &Sha256Digest)> = Vec::new();
        let mut problems = Vec::new();
        for (name, want) in &self.entries {
            match actual.entries.get(name) {
                None => missing.push((name, want)),
                Some(got) if got != want => {
                    problems.push(FileProblem::Modified { name: name.clone() })
                }
                Some(_) => {}
            }
        }
        for (name, digest) in &actual.entries {
            if !self.entries.contains_key(name) {
                extra.push((name, digest));
            }
        }
        // A missing file whose exact content appears under a new name was renamed.
        extra.retain(|(new_name, digest)| {
            if let Some(pos) = missing.iter().position(|(_, d)| d == digest) {
                let (old_name, _) = missing.remove(pos);
                problems.push(FileProblem::Renamed {
                    from: old_name.clone(),
                    to: (*new_name).clone(),
                });
                false
            } else {
                true
            }
        });
        problems.extend(
            missing
                .into_iter()
                .map(|(n, _)| FileProblem::Missing { name: n.clone() }),
        );
        problems.extend(
            extra
                .into_iter()
                .map(|(n, _)| FileProblem::Extra { name: n.clone() }),
        );
        problems.sort_by(|a, b| a.name().cmp(b.name()));
        problems
    }
}

/// One way the files of a bundle differ from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    Modified { name: String },
    Missing { name: String },
    Extra { name: String },
    Renamed { from: String, to: String },
}

impl FileProblem {
    /// The file the problem is about (the old name for a rename).
    pub fn name(&self) -> &str {
        match self {
            Self::Modified { name } | Self::Missing { name } | Self::Extra { name } => name,
            Self::Renamed { from, .. } => from,
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Modified { name } => write!(f, "{name}: modified since sealed (sha256 differs)"),
            Self::Missing { name } => write!(f, "{name}: listed in SHA256SUMS but missing"),
            Self::Extra { name } => write!(f, "{name}: not listed in SHA256SUMS (extra file)"),
            Self::Renamed { from, to } => write!(f, "{from}: renamed to {to} since sealed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(entries: &[(&str, &[u8])]) -> Manifest {
        Manifest::from_entries(
            entries
                .iter()
                .map(|(n, c)| (n.to_string(), Sha256Digest::of(c))),
        )
    }

    /// Pinned: if this digest changes, every signature ever made breaks. The
    /// value equals `sha256sum $(LC_ALL=C ls) | sha256sum` over the same files.
    #[test]
    fn manifest_and_bundle_hash_of_a_fixed_bundle_never_change() {
        let m = manifest(&[
            ("changeset.yaml", b"id: 0001-create-customers\ndescription: Create customers\ntransaction: per-changeset\n"),
            ("002-seed.sql", b"INSERT INTO customers (name) VALUES ('Ada');\n"),
            ("001-schema.sql", b"CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);\n"),
        ]);
        let bytes = m.render();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let names: Vec<&str> = text.lines().map(|l| &l[66..]).collect();
        assert_eq!(names, ["001-schema.sql", "002-seed.sql", "changeset.yaml"]);
        assert_eq!(
            text.lines().next().unwrap(),
            format!(
                "{}  001-schema.sql",
                Sha256Digest::of(
                    b"CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);\n"
                )
            )
        );
        assert_eq!(
            bundle_hash(&bytes).to_hex(),
            "0f2a390beb8f29aebf120402055e097ff4a32453529b5e136b6093262616bf5c",
            "manifest bytes:\n{text}"
        );
    }

    #[test]
    fn sha256_of_empty_input_is_the_known_value() {
        assert_eq!(
            Sha256Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Sha256Digest::of_reader(&b""[..]).unwrap(),
            Sha256Digest::of(b"")
        );
    }

    #[test]
    fn parse_round_trips_render() {
        let m = manifest(&[("a.sql", b"a"), ("b.sql", b"b"), ("b_2.sql", b"c")]);
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
    }

    #[test]
    fn parse_rejects_what_render_never_writes() {
        let d = Sha256Digest::of(b"x").to_hex();
        let cases: Vec<(String, ManifestError)> = vec![
            (String::new(), ManifestError::Empty),
            (format!("{d}  a.sql"), ManifestError::LineEndings),
            (format!("{d}  a.sql\r\n"), ManifestError::LineEndings),
            (format!("{d} a.sql\n"), ManifestError::Malformed { line: 1 }),
            (
                format!("{}  a.sql\n", d.to_uppercase()),
                ManifestError::Malformed { line: 1 },
            ),
            (
                format!("{d}  a.sql\n{d}  a.sql\n"),
                ManifestError::Duplicate {
                    line: 2,
                    name: "a.sql".into(),
                },
            ),
            (
                format!("{d}  b.sql\n{d}  a.sql\n"),
                ManifestError::Unsorted {
                    line: 2,
                    name: "a.sql".into(),
                },
            ),
            (
                format!("{d}  ../x.sql\n"),
                ManifestError::Malformed { line: 1 },
            ),
            (
                format!("{d}  a.sql\n\n"),
                ManifestError::Malformed { line: 2 },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                Manifest::parse(text.as_bytes()).unwrap_err(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn check_names_every_kind_of_difference() {
        let sealed = manifest(&[
            ("001.sql", b"one"),
            ("002.sql", b"two"),
            ("003.sql", b"three"),
            ("004.sql", b"four"),
        ]);
        let actual = manifest(&[
            ("001.sql", b"ONE"),
            ("002-renamed.sql", b"two"),
            ("004.sql", b"four"),
            ("005.sql", b"five"),
        ]);
        let problems: Vec<String> = sealed
            .check(&actual)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "001.sql: modified since sealed (sha256 differs)",
                "002.sql: renamed to 002-renamed.sql since sealed",
                "003.sql: listed in SHA256SUMS but missing",
                "005.sql: not listed in SHA256SUMS (extra file)",
            ]
        );
        assert!(sealed.check(&sealed).is_empty());
    }
}
