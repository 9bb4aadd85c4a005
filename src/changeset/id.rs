//! Changeset ids: `NNNN-slug`, four or more digits and a lower-case slug.

use std::cmp::Ordering;
use std::fmt;

/// Why a directory name or slug is not a valid changeset id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "`{0}` is not a changeset id: expected four or more digits, a hyphen and a slug, like `0001-create-customers`"
    )]
    Shape(String),
    #[error(
        "`{0}` is not a valid slug: use lower-case letters, digits and single hyphens, starting with a letter or digit (like `add-customers`)"
    )]
    Slug(String),
}

/// A parsed changeset id. Ordered by number; the text is kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChangesetId {
    number: u64,
    text: String,
}

impl ChangesetId {
    /// Parses `NNNN-slug`.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let shape = || IdError::Shape(text.to_owned());
        let (digits, slug) = text.split_once('-').ok_or_else(shape)?;
        if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(shape());
        }
        validate_slug(slug).map_err(|_| shape())?;
        let number = digits.parse().map_err(|_| shape())?;
        Ok(Self {
            number,
            text: text.to_owned(),
        })
    }

    /// Builds the id for `number` and `slug`, zero-padding the number to four digits.
    pub fn new(number: u64, slug: &str) -> Result<Self, IdError> {
        validate_slug(slug)?;
        Ok(Self {
            number,
            text: format!("{number:04}-{slug}"),
        })
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a user's argument names this changeset: the full id, its number
    /// (`42`, `0042`) or its slug.
    pub fn matches(&self, arg: &str) -> bool {
        if arg == self.text {
            return true;
        }
        if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
            return arg.parse::<u64>().is_ok_and(|n| n == self.number);
        }
        self.text
            .split_once('-')
            .is_some_and(|(_, slug)| slug == arg)
    }
}

/// Checks the slug rule: `[a-z0-9]+(-[a-z0-9]+)*`.
pub fn validate_slug(slug: &str) -> Result<(), IdError> {
    let ok = !slug.is_empty()
        && slug.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(IdError::Slug(slug.to_owned()))
    }
}

impl fmt::Display for ChangesetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for ChangesetId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.number
            .cmp(&other.number)
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for ChangesetId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid_ids() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0001-create-customers", Some(1)),
            ("0042-x", Some(42)),
            ("12345-add-index-2", Some(12345)),
            ("001-short", None),
            ("0001", None),
            ("0001-", None),
            ("0001-Upper", None),
            ("0001-double--hyphen", None),
            ("0001-trailing-", None),
            ("0001--leading", None),
            ("0001-under_score", None),
            ("abcd-slug", None),
            ("0001-sp ace", None),
            ("99999999999999999999999-overflow", None),
        ];
        for (text, want) in cases {
            let got = ChangesetId::parse(text).ok().map(|id| id.number());
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn new_pads_to_four_digits() {
        assert_eq!(ChangesetId::new(7, "seed").unwrap().as_str(), "0007-seed");
        assert_eq!(
            ChangesetId::new(12345, "big").unwrap().as_str(),
            "12345-big"
        );
        assert!(ChangesetId::new(1, "Bad").is_err());
    }

    #[test]
    fn orders_numerically_not_textually() {
        let a = ChangesetId::parse("9999-a").unwrap();
        let b = ChangesetId::parse("10000-b").unwrap();
        assert!(a < b);
    }

    #[test]
    fn matches_id_number_and_slug() {
        let id = ChangesetId::parse("0042-add-index").unwrap();
        for arg in ["0042-add-index", "42", "0042", "add-index"] {
            assert!(id.matches(arg), "{arg}");
        }
        for arg in ["43", "add", "0042-add"] {
            assert!(!id.matches(arg), "{arg}");
        }
    }
}
