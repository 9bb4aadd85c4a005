//! The trust policy of a controlled environment, as pinned in its own
//! database: who may open it, how many of them, fed from where, and which
//! keys sign its source's receipts. Pure: the canonical text (what is hashed
//! and signed), its parser, the difference between two policies, and the
//! rules that decide whether a re-pin or a candidate changeset is allowed.
//!
//! Canonical text, UTF-8, LF line endings, lines in this order and the
//! `key:` and `receipt-key:` lines sorted byte-wise:
//!
//! ```text
//! promoter policy v1
//! environment: prd
//! promote-from: qat
//! require: customer=1 developer=1
//! key: customer carl@example.com 0123…(40 hex)
//! key: developer dana@example.com 4567…
//! receipt-key: qat 89AB…
//! ```
//!
//! `promote-from:` is `-` for an environment fed by `apply`. A principal
//! (the second field of `key:`) is the normalized e-mail of the
//! certificate's primary user id, or its fingerprint.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::changeset::Sha256Digest;

/// The first line of a canonical policy.
pub const HEADER: &str = "promoter policy v1";

/// The role whose signatures are over `SHA256SUMS`; every other role
/// approves with signed approval statements.
pub const SIGNING_ROLE: &str = "developer";

/// The roles of `require` that approve with statements (every role but
/// the signing one) and need at least one person.
pub fn approving_roles(require: &BTreeMap<String, u32>) -> impl Iterator<Item = &str> {
    require
        .iter()
        .filter(|(role, n)| role.as_str() != SIGNING_ROLE && **n > 0)
        .map(|(role, _)| role.as_str())
}

/// A certificate pinned for a role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PinnedKey {
    pub role: String,
    /// The person: normalized e-mail, or the fingerprint.
    pub principal: String,
    /// Primary fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
}

/// A key whose signatures on the source's ledger rows (receipts) count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ReceiptKey {
    pub environment: String,
    pub fingerprint: String,
}

/// A trust policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub environment: String,
    pub promote_from: Option<String>,
    pub require: BTreeMap<String, u32>,
    pub keys: Vec<PinnedKey>,
    pub receipt_keys: Vec<ReceiptKey>,
}

impl Policy {
    /// Sorts the lists, so that equal policies have equal bytes.
    pub fn normalized(mut self) -> Self {
        self.keys.sort();
        self.keys.dedup();
        self.receipt_keys.sort();
        self.receipt_keys.dedup();
        self
    }

    /// The canonical text: what is hashed, pinned and signed.
    pub fn canonical(&self) -> String {
        let mut out = format!("{HEADER}\nenvironment: {}\n", self.environment);
        out.push_str(&format!(
            "promote-from: {}\n",
            self.promote_from.as_deref().unwrap_or("-")
        ));
        let require: Vec<String> = self
            .require
            .iter()
            .map(|(role, n)| format!("{role}={n}"))
            .collect();
        out.push_str(&format!("require: {}\n", require.join(" ")));
        let mut keys = self.keys.clone();
        keys.sort();
        for k in &keys {
            out.push_str(&format!(
                "key: {} {} {}\n",
                k.role, k.principal, k.fingerprint
            ));
        }
        let mut receipts = self.receipt_keys.clone();
        receipts.sort();
        for r in &receipts {
            out.push_str(&format!(
                "receipt-key: {} {}\n",
                r.environment, r.fingerprint
            ));
        }
        out
    }

    /// sha256 of the canonical text.
    pub fn hash(&self) -> Sha256Digest {
        Sha256Digest::of(self.canonical().as_bytes())
    }

    /// Parses canonical text; anything that would not render back to the
    /// same bytes is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!(
                "not a promoter policy (first line must be `{HEADER}`)"
            ));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
                .ok_or_else(|| format!("expected a `{name}:` line"))
        };
        let environment = field("environment")?;
        let promote_from = Some(field("promote-from")?).filter(|f| f != "-");
        let mut require = BTreeMap::new();
        for item in field("require")?.split_whitespace() {
            let (role, n) = item
                .split_once('=')
                .ok_or_else(|| format!("require: `{item}` is not role=count"))?;
            let n: u32 = n
                .parse()
                .map_err(|_| format!("require: `{item}` is not role=count"))?;
            require.insert(role.to_owned(), n);
        }
        let mut policy = Self {
            environment,
            promote_from,
            require,
            keys: Vec::new(),
            receipt_keys: Vec::new(),
        };
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["key:", role, principal, fpr] => policy.keys.push(PinnedKey {
                    role: (*role).to_owned(),
                    principal: (*principal).to_owned(),
                    fingerprint: (*fpr).to_owned(),
                }),
                ["receipt-key:", env, fpr] => policy.receipt_keys.push(ReceiptKey {
                    environment: (*env).to_owned(),
                    fingerprint: (*fpr).to_owned(),
                }),
                _ => return Err(format!("unexpected line `{line}`")),
            }
        }
        if policy.canonical() != text {
            return Err("not in canonical form (order, spacing or line endings differ)".into());
        }
        Ok(policy)
    }

    /// The pinned keys of `role`.
    pub fn keys_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a PinnedKey> {
        self.keys.iter().filter(move |k| k.role == role)
    }

    /// The role and principal of a pinned fingerprint.
    pub fn key(&self, fingerprint: &str) -> Option<&PinnedKey> {
        self.keys
            .iter()
            .find(|k| k.fingerprint.eq_ignore_ascii_case(fingerprint))
    }

    /// Whether `fingerprint` is a pinned receipt key of `environment`.
    pub fn is_receipt_key(&self, environment: &str, fingerprint: &str) -> bool {
        self.receipt_keys.iter().any(|r| {
            r.environment == environment && r.fingerprint.eq_ignore_ascii_case(fingerprint)
        })
    }

    /// What differs from `other` (the pinned policy), for people, one line each.
    pub fn diff(&self, pinned: &Policy) -> Vec<String> {
        let mine: BTreeSet<String> = self.canonical().lines().map(str::to_owned).collect();
        let theirs: BTreeSet<String> = pinned.canonical().lines().map(str::to_owned).collect();
        let mut out: Vec<String> = theirs.difference(&mine).map(|l| format!("- {l}")).collect();
        out.extend(mine.difference(&theirs).map(|l| format!("+ {l}")));
        out
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// How a policy came to be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinKind {
    /// The first pin: trust on first use, said out loud.
    FirstUse,
    /// A change signed by principals meeting the previously pinned `require`.
    Signed,
    /// A change without those signatures (lost keys), with a reason; `audit`
    /// always reports it.
    BreakGlass,
}

impl PinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstUse => "first-use",
            Self::Signed => "signed",
            Self::BreakGlass => "break-glass",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "first-use" => Self::FirstUse,
            "signed" => Self::Signed,
            "break-glass" => Self::BreakGlass,
            _ => return None,
        })
    }
}

/// One row of an environment's pinned-policy table: append-only and
/// hash-chained like the ledger (`entry_hash` = sha256 of
/// [`PinRecord::canonical_bytes`], which end with `prev_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    pub seq: i64,
    pub environment: String,
    /// The canonical policy text.
    pub policy: String,
    pub policy_hash: Sha256Digest,
    pub kind: PinKind,
    pub reason: Option<String>,
    /// JSON array of the signers that allowed a signed re-pin.
    pub signers: String,
    /// JSON object: fingerprint → armored public certificate of every pinned
    /// key, as pinned (signatures are checked against these, never against
    /// whatever git holds later).
    pub certificates: String,
    /// Microseconds since the Unix epoch.
    pub pinned_at: i64,
    pub os_user: String,
    pub host: String,
    pub db_role: String,
    pub prev_hash: Sha256Digest,
    pub entry_hash: Sha256Digest,
}

impl PinRecord {
    /// The bytes hashed into `entry_hash`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        crate::ledger::encode_fields(
            b"promoter-policy-row-v1\n",
            &[
                Some(&self.seq.to_string()),
                Some(&self.environment),
                Some(&self.policy),
                Some(&self.policy_hash.to_hex()),
                Some(self.kind.as_str()),
                self.reason.as_deref(),
                Some(&self.signers),
                Some(&self.certificates),
                Some(&self.pinned_at.to_string()),
                Some(&self.os_user),
                Some(&self.host),
                Some(&self.db_role),
                Some(&self.prev_hash.to_hex()),
            ],
        )
    }

    /// Sets `seq`, `prev_hash` and `entry_hash` after `prev`.
    pub fn seal(&mut self, prev: Option<&PinRecord>) {
        self.seq = prev.map_or(1, |p| p.seq + 1);
        self.prev_hash = prev.map_or(crate::ledger::GENESIS, |p| p.entry_hash);
        self.entry_hash = Sha256Digest::of(&self.canonical_bytes());
    }

    /// The policy it pinned.
    pub fn parsed(&self) -> Result<Policy, String> {
        let p = Policy::parse(&self.policy)?;
        if p.hash() != self.policy_hash {
            return Err("policy_hash does not match the policy text".into());
        }
        Ok(p)
    }
}

/// The first problem in a pinned-policy chain: (seq, reason).
pub fn check_pins(records: &[PinRecord]) -> Option<(i64, String)> {
    let mut prev: Option<&PinRecord> = None;
    for r in records {
        if Sha256Digest::of(&r.canonical_bytes()) != r.entry_hash {
            return Some((
                r.seq,
                "pinned policy row edited after it was written".into(),
            ));
        }
        let (seq, prev_hash) = (
            prev.map_or(1, |p| p.seq + 1),
            prev.map_or(crate::ledger::GENESIS, |p| p.entry_hash),
        );
        if r.seq != seq || r.prev_hash != prev_hash {
            return Some((
                r.seq,
                "pinned policy rows deleted, inserted or reordered".into(),
            ));
        }
        if let Err(e) = r.parsed() {
            return Some((r.seq, e));
        }
        prev = Some(r);
    }
    None
}

/// One good signature as the policy rules see it: who, in which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub role: String,
    pub principal: String,
    pub fingerprint: String,
}

/// Distinct principals per role among `signed`.
pub fn principals_by_role(signed: &[Signed]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in signed {
        out.entry(s.role.clone())
            .or_default()
            .insert(s.principal.clone());
    }
    out
}

/// A role short of its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Short {
    pub role: String,
    pub need: u32,
    pub have: u32,
}

/// Every role of `require` that `signed` does not meet, counting people.
pub fn shortfalls(require: &BTreeMap<String, u32>, signed: &[Signed]) -> Vec<Short> {
    let by_role = principals_by_role(signed);
    require
        .iter()
        .filter_map(|(role, &need)| {
            let have = by_role.get(role).map_or(0, |s| s.len() as u32);
            (have < need).then(|| Short {
                role: role.clone(),
                need,
                have,
            })
        })
        .collect()
}

/// Whether a re-pin to a different policy is allowed: its canonical bytes
/// must be signed by principals that meet the *currently pinned* `require`
/// (signatures checked against the pinned certificates, so `signed` holds
/// pinned roles only).
pub fn repin_allowed(current: &Policy, signed: &[Signed]) -> Result<(), Vec<Short>> {
    let counted: Vec<Signed> = signed
        .iter()
        .filter(|s| {
            current
                .key(&s.fingerprint)
                .is_some_and(|k| k.role == s.role && k.principal == s.principal)
        })
        .cloned()
        .collect();
    let short = shortfalls(&current.require, &counted);
    if short.is_empty() { Ok(()) } else { Err(short) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fpr(c: char) -> String {
        c.to_string().repeat(40)
    }

    fn prd() -> Policy {
        Policy {
            environment: "prd".into(),
            promote_from: Some("qat".into()),
            require: BTreeMap::from([("developer".into(), 1), ("customer".into(), 1)]),
            keys: vec![
                PinnedKey {
                    role: "developer".into(),
                    principal: "dana@example.com".into(),
                    fingerprint: fpr('D'),
                },
                PinnedKey {
                    role: "customer".into(),
                    principal: "carl@example.com".into(),
                    fingerprint: fpr('C'),
                },
            ],
            receipt_keys: vec![ReceiptKey {
                environment: "qat".into(),
                fingerprint: fpr('A'),
            }],
        }
    }

    /// Pinned: the bytes are what customers sign and databases hold.
    #[test]
    fn canonical_text_of_a_fixed_policy_never_changes() {
        let text = prd().canonical();
        assert_eq!(
            text,
            format!(
                "promoter policy v1\nenvironment: prd\npromote-from: qat\nrequire: customer=1 developer=1\n\
                 key: customer carl@example.com {c}\nkey: developer dana@example.com {d}\nreceipt-key: qat {a}\n",
                c = fpr('C'),
                d = fpr('D'),
                a = fpr('A')
            )
        );
        assert_eq!(
            prd().hash().to_hex(),
            Sha256Digest::of(text.as_bytes()).to_hex()
        );
        // Cross-checked with `printf … | sha256sum`.
        assert_eq!(
            prd().hash().to_hex(),
            "b1876dc3d428cb389b705cc0573568c6771c73dd05f653858ca331194de3c481"
        );
        assert_eq!(Policy::parse(&text).unwrap(), prd().normalized());
    }

    #[test]
    fn parse_refuses_what_canonical_never_writes() {
        let text = prd().canonical();
        for bad in [
            text.replace("promoter policy v1", "promoter policy v2"),
            text.replace('\n', "\r\n"),
            text.replace(
                "require: customer=1 developer=1",
                "require: developer=1 customer=1",
            ),
            text.replace("key: customer", "key:  customer"),
            format!("{text}extra line\n"),
            text.trim_end().to_owned(),
        ] {
            assert!(Policy::parse(&bad).is_err(), "accepted:\n{bad}");
        }
    }

    #[test]
    fn diff_names_what_changed() {
        let mut weaker = prd();
        weaker.require.insert("customer".into(), 0);
        weaker.keys.push(PinnedKey {
            role: "customer".into(),
            principal: "mallory@example.com".into(),
            fingerprint: fpr('M'),
        });
        let d = weaker.diff(&prd());
        assert!(
            d.contains(&"- require: customer=1 developer=1".to_owned()),
            "{d:?}"
        );
        assert!(
            d.contains(&"+ require: customer=0 developer=1".to_owned()),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("+ key: customer mallory@example.com")),
            "{d:?}"
        );
        assert!(prd().diff(&prd()).is_empty());
    }

    #[test]
    fn a_repin_needs_the_currently_pinned_people() {
        let current = prd();
        let carl = Signed {
            role: "customer".into(),
            principal: "carl@example.com".into(),
            fingerprint: fpr('C'),
        };
        let dana = Signed {
            role: "developer".into(),
            principal: "dana@example.com".into(),
            fingerprint: fpr('D'),
        };
        assert_eq!(
            repin_allowed(&current, &[carl.clone(), dana.clone()]),
            Ok(())
        );
        let short = repin_allowed(&current, std::slice::from_ref(&dana)).unwrap_err();
        assert_eq!(short[0].role, "customer");
        // A key not pinned (the attacker's own) counts for nothing.
        let mallory = Signed {
            role: "customer".into(),
            principal: "mallory@example.com".into(),
            fingerprint: fpr('M'),
        };
        assert!(repin_allowed(&current, &[dana.clone(), mallory]).is_err());
        // Two signatures of one person count once.
        let mut two = current.clone();
        two.require.insert("customer".into(), 2);
        assert!(repin_allowed(&two, &[dana, carl.clone(), carl]).is_err());
    }
}
