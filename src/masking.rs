//! Masking specs (`masking.yaml`, see `docs/masking.md`): parsed, checked
//! against the source's live catalog, and applied to rows as they stream
//! from the source's COPY to the copy's. Pure: `db` reads the catalog and
//! moves the bytes.
//!
//! Deterministic under a secret salt: every keyed transform starts from
//! HMAC-SHA256(salt, value), the same for a value wherever it appears, so
//! foreign keys still join after masking. The salt is read from an
//! environment variable, never from the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::changeset::Sha256Digest;

/// Where the salt is read from unless the spec names another variable.
pub const DEFAULT_SALT_ENV: &str = "PROMOTER_MASK_SALT";

/// Shortest salt accepted: a short one can be guessed, and with it every
/// masked value that came from a small set (names, phone numbers).
pub const MIN_SALT_BYTES: usize = 16;

/// What happens to a column's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// Copied as is, for the reason given.
    Keep(String),
    /// Every value becomes NULL.
    Null,
    /// Every value becomes this one.
    Fixed(String),
    /// HMAC-SHA256 of the value, hex (cut to the column's length).
    Hash,
    /// `u<16 hex>@example.invalid`.
    Email,
    /// A first and last name from fixed lists.
    Name,
    /// Each digit replaced, everything else kept (`+1 (555) 010-2030`).
    Phone,
    /// Each digit replaced, everything else kept.
    Digits,
    /// The first N characters.
    Truncate(usize),
    /// An SQL expression over the row, evaluated by the source in the
    /// read-only snapshot the copy is taken from.
    Sql(String),
}

impl Transform {
    fn keyed(&self) -> bool {
        matches!(
            self,
            Self::Hash | Self::Email | Self::Name | Self::Phone | Self::Digits
        )
    }

    fn name(&self) -> String {
        match self {
            Self::Keep(_) => "keep".into(),
            Self::Null => "null".into(),
            Self::Fixed(v) => format!("fixed: {v}"),
            Self::Hash => "hash".into(),
            Self::Email => "email".into(),
            Self::Name => "name".into(),
            Self::Phone => "phone".into(),
            Self::Digits => "digits".into(),
            Self::Truncate(n) => format!("truncate: {n}"),
            Self::Sql(e) => format!("sql: {e}"),
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One table of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub schema: String,
    pub name: String,
    pub sensitive: bool,
    pub columns: BTreeMap<String, Transform>,
}

/// A parsed `masking.yaml`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub path: PathBuf,
    /// sha256 of the file's bytes, recorded in the `refreshed` row.
    pub sha256: Sha256Digest,
    pub salt_env: String,
    pub tables: Vec<TableSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    salt_env: Option<String>,
    #[serde(default, deserialize_with = "crate::config::unique_keys")]
    tables: BTreeMap<String, TableFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    sensitive: bool,
    #[serde(default, deserialize_with = "crate::config::unique_keys")]
    columns: BTreeMap<String, Option<serde_yaml_ng::Value>>,
}

/// A problem with a spec, naming its file and where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SpecError {
    pub path: PathBuf,
    pub message: String,
}

fn transform_named(name: &str) -> Option<Transform> {
    Some(match name {
        "null" => Transform::Null,
        "hash" => Transform::Hash,
        "email" => Transform::Email,
        "name" => Transform::Name,
        "phone" => Transform::Phone,
        "digits" => Transform::Digits,
        _ => return None,
    })
}

const TRANSFORMS: &str = "null, fixed: VALUE, hash, email, name, phone, digits, truncate: N, sql: EXPR, or keep: \"reason\"";

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One column's entry: `email`, `{ transform: email }`, `{ keep: "why" }`,
/// `{ fixed: V }`, `{ truncate: N }`, `{ sql: EXPR }`; YAML `null` is the
/// `null` transform.
fn column_spec(value: Option<&serde_yaml_ng::Value>) -> Result<Transform, String> {
    use serde_yaml_ng::Value;
    let Some(value) = value else {
        return Ok(Transform::Null);
    };
    match value {
        Value::Null => Ok(Transform::Null),
        Value::String(s) => transform_named(s)
            .ok_or_else(|| format!("unknown transform `{s}` (one of: {TRANSFORMS})")),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().expect("one entry");
            let key = k.as_str().unwrap_or("");
            match key {
                "transform" => match v {
                    Value::Null => Ok(Transform::Null),
                    Value::String(s) => transform_named(s)
                        .ok_or_else(|| format!("unknown transform `{s}` (one of: {TRANSFORMS})")),
                    _ => Err("`transform` takes a transform's name".into()),
                },
                "keep" => match scalar(v) {
                    Some(reason) if !reason.trim().is_empty() => Ok(Transform::Keep(reason)),
                    _ => Err("`keep` needs the reason the values may leave unmasked, e.g. keep: \"surrogate key\"".into()),
                },
                "fixed" => scalar(v)
                    .map(Transform::Fixed)
                    .ok_or_else(|| "`fixed` takes one value".to_owned()),
                "truncate" => v
                    .as_u64()
                    .map(|n| Transform::Truncate(n as usize))
                    .ok_or_else(|| "`truncate` takes a number of characters".to_owned()),
                "sql" => match v {
                    Value::String(e) if !e.trim().is_empty() => Ok(Transform::Sql(e.clone())),
                    _ => Err("`sql` takes an SQL expression over the row".into()),
                },
                other => Err(format!("unknown key `{other}` (one of: {TRANSFORMS})")),
            }
        }
        _ => Err(format!("expected one of: {TRANSFORMS}")),
    }
}

/// `schema.table` or `table` (public); names as PostgreSQL folds them are
/// not guessed: write them as the catalog has them.
fn split_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (s.to_owned(), t.to_owned()),
        None => ("public".to_owned(), name.to_owned()),
    }
}

impl Spec {
    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        // The message of `limits::read` names the file already.
        let bytes =
            crate::limits::read(path, crate::limits::MASKING_SPEC).map_err(|e| SpecError {
                path: path.to_owned(),
                message: e
                    .strip_prefix(&format!("{}: ", path.display()))
                    .unwrap_or(&e)
                    .to_owned(),
            })?;
        Self::parse(path, &bytes)
    }

    /// Parses a spec's bytes (`path` is for messages).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, SpecError> {
        let err = |message: String| SpecError {
            path: path.to_owned(),
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?;
        crate::limits::yaml_depth(text).map_err(err)?;
        let file: SpecFile = serde_yaml_ng::from_str(text)
            .map_err(|e| err(crate::config::describe_yaml_error(&e)))?;
        let salt_env = file.salt_env.unwrap_or_else(|| DEFAULT_SALT_ENV.to_owned());
        if salt_env.is_empty()
            || !salt_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(err(format!(
                "salt_env must name an environment variable, not {salt_env:?} (the salt itself never lives in the file)"
            )));
        }
        let mut tables = Vec::new();
        for (name, t) in file.tables {
            let (schema, table) = split_name(&name);
            let mut columns = BTreeMap::new();
            for (column, value) in &t.columns {
                let transform = column_spec(value.as_ref())
                    .map_err(|m| err(format!("table {name}, column {column}: {m}")))?;
                columns.insert(column.clone(), transform);
            }
            tables.push(TableSpec {
                schema,
                name: table,
                sensitive: t.sensitive,
                columns,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            sha256: Sha256Digest::of(bytes),
            salt_env,
            tables,
        })
    }

    /// Whether any transform needs the salt.
    pub fn needs_salt(&self) -> bool {
        self.tables
            .iter()
            .any(|t| t.columns.values().any(Transform::keyed))
    }
}

/// A column of the source's live catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type`, e.g. `character varying(40)`.
    pub type_name: String,
    /// `pg_type.typcategory`: `S` for strings.
    pub category: char,
    /// The length limit of `varchar(n)`/`char(n)`.
    pub max_chars: Option<usize>,
    pub not_null: bool,
    pub generated: bool,
}

/// A table of the source's live catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `pg_class.relkind`.
    pub kind: char,
    pub columns: Vec<Column>,
}

/// A foreign key: `columns` of `table` reference `ref_columns` of `ref_table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub table: (String, String),
    pub columns: Vec<String>,
    pub ref_table: (String, String),
    pub ref_columns: Vec<String>,
}

/// A table whose rows are transformed on the way: every column that COPY
/// carries (generated ones excluded), in order, with its transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<(Column, Transform)>,
}

impl MaskedTable {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// What a spec does to a source: the tables to stream through the masker,
/// and the transforms it added along foreign keys.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tables: Vec<MaskedTable>,
    /// `orders.customer_email: email (from its foreign key to customers.email)`.
    pub propagated: Vec<String>,
}

fn qualified(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// Checks a spec against the source's catalog and works out every table's
/// transforms; `Err` lists every problem, each naming table and column.
/// `strict` treats every table as sensitive.
pub fn plan(
    spec: &Spec,
    catalog: &[Table],
    fks: &[ForeignKey],
    strict: bool,
) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    // (schema, table) → column → transform, as the spec says.
    let mut chosen: BTreeMap<(String, String), BTreeMap<String, Transform>> = BTreeMap::new();
    for t in &spec.tables {
        let shown = qualified(&t.schema, &t.name);
        let Some(live) = catalog
            .iter()
            .find(|c| c.schema == t.schema && c.name == t.name)
        else {
            problems.push(format!("table {shown}: no such table in the source"));
            continue;
        };
        if live.kind == 'p' {
            problems.push(format!(
                "table {shown} is partitioned: its rows live in its partitions; list those"
            ));
            continue;
        }
        for (column, transform) in &t.columns {
            let Some(col) = live.columns.iter().find(|c| &c.name == column) else {
                problems.push(format!("table {shown}: no column {column}"));
                continue;
            };
            if let Err(why) = fits(col, transform) {
                problems.push(format!(
                    "table {shown}, column {column} ({}): {why}",
                    col.type_name
                ));
            }
        }
        if t.sensitive || strict {
            let unlisted: Vec<&str> = live
                .columns
                .iter()
                .filter(|c| !c.generated && !t.columns.contains_key(&c.name))
                .map(|c| c.name.as_str())
                .collect();
            if !unlisted.is_empty() {
                problems.push(format!(
                    "table {shown} is sensitive: column{} {} {} neither transformed nor kept (add a transform, or keep: \"why it may leave\")",
                    if unlisted.len() == 1 { "" } else { "s" },
                    unlisted.join(", "),
                    if unlisted.len() == 1 { "is" } else { "are" }
                ));
            }
        }
        chosen.insert((t.schema.clone(), t.name.clone()), t.columns.clone());
    }
    if strict {
        for live in catalog.iter().filter(|l| l.kind == 'r') {
            if !spec
                .tables
                .iter()
                .any(|t| t.schema == live.schema && t.name == live.name)
            {
                problems.push(format!(
                    "table {} is not in the spec, and --strict treats every table as sensitive",
                    qualified(&live.schema, &live.name)
                ));
            }
        }
    }
    // Foreign keys: a masked key's transform goes to the columns that
    // reference it, so joins still match; until nothing changes.
    let mut propagated = Vec::new();
    let transform_of =
        |chosen: &BTreeMap<(String, String), BTreeMap<String, Transform>>,
         t: &(String, String),
         c: &str| { chosen.get(t).and_then(|m| m.get(c)).cloned() };
    for _ in 0..=fks.len() {
        let mut changed = false;
        for fk in fks {
            for (col, ref_col) in fk.columns.iter().zip(&fk.ref_columns) {
                let referenced = transform_of(&chosen, &fk.ref_table, ref_col);
                let referencing = transform_of(&chosen, &fk.table, col);
                let from = format!("{}.{col}", qualified(&fk.table.0, &fk.table.1));
                let to = format!("{}.{ref_col}", qualified(&fk.ref_table.0, &fk.ref_table.1));
                match (&referenced, &referencing) {
                    (
                        None | Some(Transform::Keep(_)),
                        None | Some(Transform::Keep(_) | Transform::Null),
                    ) => {}
                    (None | Some(Transform::Keep(_)), Some(t)) => {
                        let p = format!(
                            "{from}: `{t}` would break its foreign key {} to {to}, which is not masked: mask {to} instead (its transform goes to {from} by itself)",
                            fk.name
                        );
                        if !problems.contains(&p) {
                            problems.push(p);
                        }
                    }
                    (Some(r), _) if !r.keyed() => {
                        let p = format!(
                            "{to} is referenced by foreign key {} from {from}: only hash, email, name, phone or digits keep the keys matching, not `{r}`",
                            fk.name
                        );
                        if !problems.contains(&p) {
                            problems.push(p);
                        }
                    }
                    (Some(r), None) => {
                        chosen
                            .entry(fk.table.clone())
                            .or_default()
                            .insert(col.clone(), r.clone());
                        propagated.push(format!(
                            "{from}: {r} (from its foreign key {} to {to})",
                            fk.name
                        ));
                        changed = true;
                    }
                    (Some(r), Some(t)) if r == t => {}
                    (Some(r), Some(t)) => {
                        let p = format!(
                            "{from} is `{t}`, but it references {to}, which is `{r}`: the keys would no longer match (leave {from} out; it follows {to})"
                        );
                        if !problems.contains(&p) {
                            problems.push(p);
                        }
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut tables = Vec::new();
    for ((schema, name), columns) in &chosen {
        if columns.values().all(|t| matches!(t, Transform::Keep(_))) {
            continue;
        }
        let live = catalog
            .iter()
            .find(|c| &c.schema == schema && &c.name == name)
            .expect("checked above");
        tables.push(MaskedTable {
            schema: schema.clone(),
            name: name.clone(),
            columns: live
                .columns
                .iter()
                .filter(|c| !c.generated)
                .map(|c| {
                    let t = columns
                        .get(&c.name)
                        .cloned()
                        .unwrap_or_else(|| Transform::Keep("not listed".into()));
                    (c.clone(), t)
                })
                .collect(),
        });
    }
    Ok(Plan { tables, propagated })
}

/// Whether a transform can produce values of the column's type.
fn fits(col: &Column, t: &Transform) -> Result<(), String> {
    if col.generated && !matches!(t, Transform::Keep(_)) {
        return Err("a generated column is computed from the others; mask those".into());
    }
    match t {
        Transform::Null if col.not_null => Err("NOT NULL: it cannot become null".into()),
        Transform::Hash
        | Transform::Email
        | Transform::Name
        | Transform::Phone
        | Transform::Digits
        | Transform::Truncate(_)
            if col.category != 'S' =>
        {
            Err(format!(
                "`{t}` makes text; this column is not a string type (use sql: EXPR, fixed: VALUE or null)"
            ))
        }
        _ => Ok(()),
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

const FIRST_NAMES: [&str; 32] = [
    "Ada", "Alex", "Amir", "Ana", "Ben", "Carla", "Chen", "Dana", "Eli", "Emma", "Farid", "Gita",
    "Hana", "Ivan", "Jon", "Kai", "Lena", "Luca", "Maya", "Mo", "Nia", "Omar", "Pia", "Raj",
    "Rosa", "Sam", "Sofia", "Tom", "Uma", "Vera", "Yuki", "Zoe",
];
const LAST_NAMES: [&str; 32] = [
    "Abe", "Berg", "Costa", "Diaz", "Eriksen", "Fischer", "Garcia", "Haas", "Ito", "Jensen", "Kim",
    "Lund", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Silva", "Tanaka",
    "Ueda", "Vogel", "Weber", "Xu", "Yilmaz", "Zhang", "Brandt", "Marsh", "Nolan", "Park", "Reyes",
];

/// Applies transforms under one salt.
#[derive(Clone)]
pub struct Masker {
    salt: Vec<u8>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Masker { salt: *** }")
    }
}

impl Masker {
    pub fn new(salt: &[u8]) -> Self {
        Self {
            salt: salt.to_vec(),
        }
    }

    /// The masked value (`None`: NULL). NULL stays NULL under every
    /// transform; `Sql` was already applied by the source.
    pub fn apply(&self, t: &Transform, col: &Column, value: Option<&str>) -> Option<String> {
        let v = value?;
        let out = match t {
            Transform::Keep(_) | Transform::Sql(_) => return Some(v.to_owned()),
            Transform::Null => return None,
            Transform::Fixed(f) => f.clone(),
            Transform::Truncate(n) => v.chars().take(*n).collect(),
            Transform::Hash => hex::encode(hmac_sha256(&self.salt, v.as_bytes())),
            Transform::Email => {
                let h = hmac_sha256(&self.salt, v.as_bytes());
                format!("u{}@example.invalid", &hex::encode(h)[..16])
            }
            Transform::Name => {
                let h = hmac_sha256(&self.salt, v.as_bytes());
                format!(
                    "{} {}",
                    FIRST_NAMES[usize::from(h[0]) % FIRST_NAMES.len()],
                    LAST_NAMES[usize::from(h[1]) % LAST_NAMES.len()]
                )
            }
            Transform::Phone | Transform::Digits => self.digits(v),
        };
        Some(match col.max_chars {
            Some(n) => out.chars().take(n).collect(),
            None => out,
        })
    }

    /// Every ASCII digit replaced by one from the value's HMAC stream.
    fn digits(&self, v: &str) -> String {
        let mut stream = Vec::new();
        let mut block = 0u32;
        let mut next = || {
            if stream.is_empty() {
                let mut msg = v.as_bytes().to_vec();
                msg.extend_from_slice(&block.to_be_bytes());
                block += 1;
                stream = hmac_sha256(&self.salt, &msg).to_vec();
            }
            char::from(b'0' + stream.pop().unwrap_or(0) % 10)
        };
        v.chars()
            .map(|c| if c.is_ascii_digit() { next() } else { c })
            .collect()
    }
}

/// Decodes one field of COPY's text format (`None`: `\N`).
pub fn decode_field(raw: &[u8]) -> Option<String> {
    if raw == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut n = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            n = n * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(n as u8);
            }
            b'x' => {
                let mut n = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            n = n * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push(n as u8);
                }
            }
            other => out.push(other),
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Encodes a value as one field of COPY's text format.
pub fn encode_field(value: Option<&str>, out: &mut Vec<u8>) {
    let Some(v) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            _ => out.push(b),
        }
    }
}

/// Masks one COPY text row (without its newline) into `out` (with one).
/// Untouched columns are copied byte for byte.
pub fn mask_row(
    masker: &Masker,
    table: &MaskedTable,
    row: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let fields: Vec<&[u8]> = row.split(|b| *b == b'\t').collect();
    if fields.len() != table.columns.len() {
        return Err(format!(
            "{}: a row of {} fields where {} columns were expected",
            table.qualified(),
            fields.len(),
            table.columns.len()
        ));
    }
    for (i, (raw, (col, t))) in fields.iter().zip(&table.columns).enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        if matches!(t, Transform::Keep(_) | Transform::Sql(_)) {
            out.extend_from_slice(raw);
        } else {
            let value = decode_field(raw);
            encode_field(masker.apply(t, col, value.as_deref()).as_deref(), out);
        }
    }
    out.push(b'\n');
    Ok(())
}

/// The names of every column a spec transforms (not kept), per table, for
/// the leak check in tests and the summary.
pub fn masked_columns(plan: &Plan) -> BTreeSet<String> {
    plan.tables
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .filter(|(_, tr)| !matches!(tr, Transform::Keep(_)))
                .map(move |(c, _)| format!("{}.{}", t.qualified(), c.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn col(name: &str, category: char) -> Column {
        Column {
            name: name.into(),
            type_name: if category == 'S' {
                "text".into()
            } else {
                "integer".into()
            },
            category,
            max_chars: None,
            not_null: false,
            generated: false,
        }
    }

    fn catalog() -> Vec<Table> {
        vec![
            Table {
                schema: "public".into(),
                name: "customers".into(),
                kind: 'r',
                columns: vec![
                    col("id", 'N'),
                    col("email", 'S'),
                    col("name", 'S'),
                    col("notes", 'S'),
                ],
            },
            Table {
                schema: "public".into(),
                name: "orders".into(),
                kind: 'r',
                columns: vec![
                    col("id", 'N'),
                    col("customer_email", 'S'),
                    col("total", 'N'),
                ],
            },
        ]
    }

    fn fks() -> Vec<ForeignKey> {
        vec![ForeignKey {
            name: "orders_customer_email_fkey".into(),
            table: ("public".into(), "orders".into()),
            columns: vec!["customer_email".into()],
            ref_table: ("public".into(), "customers".into()),
            ref_columns: vec!["email".into()],
        }]
    }

    fn spec(yaml: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("masking.yaml"), yaml.as_bytes())
    }

    #[test]
    fn specs_parse_every_form_and_refuse_what_they_do_not_know() {
        let s = spec(
            "tables:\n  customers:\n    sensitive: true\n    columns:\n      id: { keep: \"surrogate key\" }\n      email: email\n      name: { transform: name }\n      notes: null\n  app.logs:\n    columns:\n      msg: { truncate: 10 }\n      who: { fixed: nobody }\n      at: { sql: \"date_trunc('day', at)\" }\n",
        )
        .unwrap();
        assert_eq!(s.salt_env, DEFAULT_SALT_ENV);
        let c = &s
            .tables
            .iter()
            .find(|t| t.name == "customers")
            .unwrap()
            .columns;
        assert_eq!(c["email"], Transform::Email);
        assert_eq!(c["name"], Transform::Name);
        assert_eq!(c["notes"], Transform::Null);
        assert_eq!(c["id"], Transform::Keep("surrogate key".into()));
        let logs = s.tables.iter().find(|t| t.name == "logs").unwrap();
        assert_eq!(logs.schema, "app");
        assert_eq!(logs.columns["msg"], Transform::Truncate(10));
        for (bad, want) in [
            (
                "tables:\n  t:\n    columns:\n      c: shuffle\n",
                "unknown transform `shuffle`",
            ),
            (
                "tables:\n  t:\n    columns:\n      c: { keep: \"\" }\n",
                "needs the reason",
            ),
            ("tables:\n  t:\n    colums: {}\n", "unknown field `colums`"),
            ("salt: abc\n", "unknown field `salt`"),
            (
                "salt_env: \"my salt\"\n",
                "salt_env must name an environment variable",
            ),
            (
                "tables:\n  t:\n    columns:\n      c: hash\n      c: email\n",
                "duplicate key `c`",
            ),
        ] {
            let e = spec(bad).unwrap_err().to_string();
            assert!(e.starts_with("masking.yaml: "), "{e}");
            assert!(e.contains(want), "{bad:?} → {e}");
        }
    }

    #[test]
    fn an_oversized_or_deeply_nested_spec_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("masking.yaml");
        std::fs::write(&big, vec![b'#'; crate::limits::MASKING_SPEC as usize + 1]).unwrap();
        let e = Spec::load(&big).unwrap_err().to_string();
        assert!(
            e.contains("masking.yaml") && e.contains("bytes allowed"),
            "{e}"
        );
        let deep = format!("tables: {}{}\n", "[".repeat(40), "]".repeat(40));
        let e = spec(&deep).unwrap_err().to_string();
        assert!(e.contains("nest"), "{e}");
    }

    #[test]
    fn a_sensitive_table_refuses_an_unlisted_column_and_strict_refuses_unlisted_tables() {
        let s = spec("tables:\n  customers:\n    sensitive: true\n    columns:\n      id: { keep: key }\n      email: email\n      name: name\n").unwrap();
        let problems = plan(&s, &catalog(), &fks(), false).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("column notes is neither transformed nor kept"),
            "{problems:?}"
        );
        let s = spec("tables:\n  customers:\n    columns:\n      email: email\n").unwrap();
        assert!(plan(&s, &catalog(), &fks(), false).is_ok());
        let problems = plan(&s, &catalog(), &fks(), true).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("table orders is not in the spec")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("columns id, name, notes are")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_catalog_decides_what_exists_and_what_fits() {
        for (yaml, want) in [
            (
                "tables:\n  nope:\n    columns: {}\n",
                "table nope: no such table",
            ),
            (
                "tables:\n  customers:\n    columns:\n      mail: email\n",
                "table customers: no column mail",
            ),
            (
                "tables:\n  customers:\n    columns:\n      id: email\n",
                "not a string type",
            ),
            (
                "tables:\n  orders:\n    columns:\n      customer_email: hash\n",
                "which is not masked: mask customers.email instead",
            ),
            (
                "tables:\n  customers:\n    columns:\n      email: { fixed: x }\n",
                "only hash, email, name, phone or digits",
            ),
            (
                "tables:\n  customers:\n    columns:\n      email: email\n  orders:\n    columns:\n      customer_email: hash\n",
                "the keys would no longer match",
            ),
        ] {
            let problems = plan(&spec(yaml).unwrap(), &catalog(), &fks(), false).unwrap_err();
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{yaml} → {problems:?}"
            );
        }
        let mut cat = catalog();
        cat[0].columns[3].not_null = true;
        let problems = plan(
            &spec("tables:\n  customers:\n    columns:\n      notes: null\n").unwrap(),
            &cat,
            &fks(),
            false,
        )
        .unwrap_err();
        assert!(problems[0].contains("NOT NULL"), "{problems:?}");
    }

    #[test]
    fn a_masked_key_carries_its_transform_along_foreign_keys() {
        let s = spec("tables:\n  customers:\n    columns:\n      email: email\n").unwrap();
        let p = plan(&s, &catalog(), &fks(), false).unwrap();
        assert_eq!(p.tables.len(), 2);
        let orders = p.tables.iter().find(|t| t.name == "orders").unwrap();
        assert_eq!(orders.columns[1].1, Transform::Email);
        assert!(matches!(orders.columns[0].1, Transform::Keep(_)));
        assert!(
            p.propagated[0].starts_with("orders.customer_email: email"),
            "{:?}",
            p.propagated
        );
        assert_eq!(
            masked_columns(&p).into_iter().collect::<Vec<_>>(),
            ["public.customers.email", "public.orders.customer_email"]
        );
    }

    #[test]
    fn masking_is_deterministic_per_salt_and_keeps_shapes() {
        let (a, b) = (
            Masker::new(b"salt-one-0123456789"),
            Masker::new(b"salt-two-0123456789"),
        );
        let text = col("c", 'S');
        for t in [
            Transform::Hash,
            Transform::Email,
            Transform::Name,
            Transform::Phone,
        ] {
            let x = a.apply(&t, &text, Some("ada 0142 5550"));
            assert_eq!(x, a.apply(&t, &text, Some("ada 0142 5550")), "{t}");
            assert_ne!(x, a.apply(&t, &text, Some("bob 0142 5551")), "{t}");
            if t != Transform::Name {
                assert_ne!(x, b.apply(&t, &text, Some("ada 0142 5550")), "{t}");
            }
            assert_eq!(a.apply(&t, &text, None), None, "NULL stays NULL under {t}");
        }
        let phone = a
            .apply(&Transform::Phone, &text, Some("+1 (555) 010-2030"))
            .unwrap();
        assert_eq!(phone.len(), "+1 (555) 010-2030".len());
        assert_eq!(
            phone.replace(|c: char| c.is_ascii_digit(), "9"),
            "+9 (999) 999-9999"
        );
        assert_ne!(phone, "+1 (555) 010-2030");
        let email = a.apply(&Transform::Email, &text, Some("x")).unwrap();
        assert!(
            email.starts_with('u') && email.ends_with("@example.invalid"),
            "{email}"
        );
        let short = Column {
            max_chars: Some(8),
            ..text.clone()
        };
        assert_eq!(
            a.apply(&Transform::Hash, &short, Some("x")).unwrap().len(),
            8
        );
        assert_eq!(
            a.apply(&Transform::Truncate(3), &text, Some("héllo"))
                .unwrap(),
            "hél"
        );
    }

    #[test]
    fn copy_text_fields_round_trip() {
        for (raw, value) in [
            (&b"plain"[..], Some("plain")),
            (b"\\N", None),
            (b"a\\tb\\nc\\\\d", Some("a\tb\nc\\d")),
            (b"\\101\\x42", Some("AB")),
            (b"caf\xc3\xa9", Some("café")),
        ] {
            assert_eq!(decode_field(raw).as_deref(), value, "{raw:?}");
            let mut out = Vec::new();
            encode_field(value, &mut out);
            assert_eq!(decode_field(&out).as_deref(), value);
        }
    }
}
