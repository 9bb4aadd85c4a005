//! `environments.yaml`: environments, the pipeline order, signature
//! requirements and the role keyrings.
//!
//! Loading validates everything that can be checked without a database;
//! `${VAR}` references in URLs are resolved only when an environment is used,
//! so a missing `DEV_DATABASE_URL` does not stop `promote qat prd`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// File name of the project configuration.
pub const CONFIG_FILE: &str = "environments.yaml";

/// Errors in `environments.yaml` or in resolving it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("unknown environment `{name}` (environments.yaml defines: {known})")]
    UnknownEnvironment { name: String, known: String },
    #[error("environment `{env}`: database_url refers to ${{{var}}}, which is not set")]
    MissingVariable { env: String, var: String },
    #[error("environment `{env}`: receipt_key refers to ${{{var}}}, which is not set")]
    MissingReceiptKey { env: String, var: String },
    #[error("environment `{env}`: database_url: {message}")]
    BadUrl { env: String, message: String },
    #[error("`{env}` is a fleet (targets: {targets}): name one target as {env}/TARGET")]
    Fleet { env: String, targets: String },
    #[error("fleet `{env}` has no target `{target}` (its targets: {known})")]
    UnknownTarget {
        env: String,
        target: String,
        known: String,
    },
    #[error("branch {name}: {message}")]
    Branch { name: String, message: String },
    #[error("environment `{env}`: targets_file: {message}")]
    TargetsFile { env: String, message: String },
    #[error("{env} has {count} targets, at places 0 to {last} ({known})", last = count.saturating_sub(1))]
    NoTargetAt {
        env: String,
        count: usize,
        known: String,
    },
}

/// Names for a message: the first ten of `total`, and how many more (a
/// fleet may have thousands).
pub fn first_names<'a>(names: impl IntoIterator<Item = &'a str>, total: usize) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.into_iter().take(SHOWN).collect();
    match total.saturating_sub(names.len()) {
        0 => names.join(", "),
        more => format!("{} and {more} more", names.join(", ")),
    }
}

/// The parsed `environments.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Schema that holds promoter's ledger in every target database.
    #[serde(default = "default_ledger_schema")]
    pub ledger_schema: String,
    /// Environments by name.
    #[serde(deserialize_with = "unique_keys")]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// Role name → directory of public certificates allowed to sign in that role.
    #[serde(default = "default_roles", deserialize_with = "unique_keys")]
    pub roles: BTreeMap<String, PathBuf>,
    /// Where branch databases are made (`promoter branch create`).
    #[serde(default)]
    pub branches: BranchesConfig,
    /// Where data profiles' artifacts are kept (`promoter profile`).
    #[serde(default)]
    pub profiles: ProfilesConfig,
}

/// `profiles:` in `environments.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    /// The directory that holds the artifacts (pg_dump directories),
    /// relative to the project root or absolute; default `.promoter/profiles`
    /// (git-ignored). A directory for now: an object store would be another
    /// kind of store behind the same pins.
    pub store: Option<PathBuf>,
}

impl ProfilesConfig {
    /// The store's directory for a project at `root`.
    pub fn store_dir(&self, root: &Path) -> PathBuf {
        match &self.store {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => root.join(p),
            None => root.join(".promoter/profiles"),
        }
    }
}

/// `branches:` in `environments.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchesConfig {
    /// A connection to any database of the cluster that holds the branch
    /// databases (its user, password and host serve every branch), written
    /// as `database_url` is. Without it a branch is made in the cluster of
    /// the environment it descends from, which must be one without
    /// `promote_from`: promoter never creates databases in a controlled
    /// environment's cluster.
    pub database_url: Option<String>,
}

fn default_ledger_schema() -> String {
    "promoter".to_owned()
}

/// Deserializes a map, refusing a key that appears twice (YAML parsers keep
/// the last one silently, which would hide a misconfigured environment).
pub(crate) fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(unique_pairs(deserializer)?.into_iter().collect())
}

/// A map's (key, value) pairs in the order written, a key that appears
/// twice refused ([`unique_keys`], keeping the order).
fn unique_pairs<'de, D, V>(deserializer: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                }
                out.push((key, map.next_value()?));
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Visitor(std::marker::PhantomData))
}

/// A fleet's targets, (name, URL as written), in the order written; a
/// name given twice is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets(Vec<(String, String)>);

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// (name, URL as written), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, u)| (n.as_str(), u.as_str()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        unique_pairs(deserializer).map(Targets)
    }
}

/// Parses a `targets_file`: one target a line, its name and its URL (as
/// `database_url` is written, `${VAR}`s allowed) separated by spaces or
/// tabs; blank lines and lines starting with `#` are skipped. Errors name
/// the line. An empty list is refused: a fleet of no databases is a
/// mistake, not a no-op.
pub fn parse_targets_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    // Each name's first line (a fleet may have thousands).
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line is never echoed: its URL may carry a password.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let &[name, url] = fields.as_slice() else {
            return Err(format!(
                "line {n}: expected `NAME URL` (a target name, then its database URL), found {} fields",
                fields.len()
            ));
        };
        if !is_target_name(name) {
            return Err(format!(
                "line {n}: target name `{name}` must match [a-z0-9][a-z0-9_-]*"
            ));
        }
        if let Some(at) = first.insert(name, n) {
            return Err(format!(
                "line {n}: target `{name}` is listed twice (first at line {at})"
            ));
        }
        out.push((name.to_owned(), url.to_owned()));
    }
    if out.is_empty() {
        return Err("lists no targets (one `NAME URL` a line)".to_owned());
    }
    Ok(out)
}

/// The roles used when a project has no `environments.yaml` yet.
pub fn default_roles() -> BTreeMap<String, PathBuf> {
    BTreeMap::from([
        ("developer".to_owned(), PathBuf::from("keys/developers")),
        ("customer".to_owned(), PathBuf::from("keys/customers")),
    ])
}

/// One environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// PostgreSQL URL; `${VAR}` and `${VAR:-default}` are read from the environment.
    /// Empty for a fleet (see `targets`).
    #[serde(default)]
    pub database_url: String,
    /// A fleet: the same environment in many databases (one per customer),
    /// by target name, each URL as `database_url` is written, in the order
    /// written (the canary's). Each target has its own lock, ledger, pinned
    /// policy and checkpoint; one `promote` goes to all of them (`--jobs`,
    /// `--canary`, `--max-failures`). After loading, the targets of
    /// `targets_file` follow these.
    #[serde(default)]
    pub targets: Targets,
    /// A fleet's targets listed in a file, one `NAME URL` a line (see
    /// [`parse_targets_file`]); `${VAR}`s resolved, relative to the project.
    /// Read from the file system when the command runs, like a `${VAR}`.
    #[serde(default)]
    pub targets_file: Option<String>,
    /// Why `targets_file` could not be read, when it could not: the fleet
    /// is refused with it wherever its targets are needed (not at load, so
    /// that commands about other environments still work).
    #[serde(skip)]
    pub unresolved: Option<String>,
    /// The environment whose ledger feeds this one; absent for DEV.
    #[serde(default)]
    pub promote_from: Option<String>,
    /// Distinct signers needed per role, e.g. `{developer: 1, customer: 1}`.
    #[serde(default, deserialize_with = "unique_keys")]
    pub require: BTreeMap<String, u32>,
    /// Ask before applying, unless `--yes`.
    #[serde(default)]
    pub confirm: bool,
    /// PostgreSQL's `statement_timeout` for the applying session, e.g. `5min`
    /// (default: the server's, normally none).
    #[serde(default)]
    pub statement_timeout: Option<String>,
    /// PostgreSQL's `lock_timeout` for the applying session: how long one
    /// statement waits for a table lock, e.g. `10s` (default: the server's).
    /// Not to be confused with `--lock-wait`, how long promoter waits for
    /// another promoter to finish with the same database.
    #[serde(default)]
    pub lock_timeout: Option<String>,
    /// How long to wait for a connection, e.g. `10s` (default 10 s).
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// The secret key that signs every ledger row this environment writes
    /// (its receipts): an armored key file, or `gpg:KEYID`; usually
    /// `${QAT_RECEIPT_KEY}`. Its public certificate is committed as
    /// `keys/environments/<env>.asc`.
    #[serde(default)]
    pub receipt_key: Option<String>,
    /// For a branch (never read from the file): the database that replaces
    /// the one `database_url` names, on the same server with the same
    /// credentials.
    #[serde(skip)]
    pub database: Option<String>,
}

/// Default for `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Parses `500ms`, `10s`, `5min`, `1h`, `14d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub path: PathBuf,
    pub file: ConfigFile,
}

/// Formats a YAML error as `line L column C: message`.
pub fn describe_yaml_error(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match e.location() {
        // serde_yaml_ng already appends "at line L column C" to most messages.
        Some(loc) if !text.contains(" at line ") => {
            format!("line {} column {}: {text}", loc.line(), loc.column())
        }
        _ => text,
    }
}

impl Config {
    /// Loads `environments.yaml` from the project root.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let path = root.join(CONFIG_FILE);
        if let Ok(meta) = std::fs::metadata(&path)
            && let Err(message) = crate::limits::check(
                &path.display().to_string(),
                meta.len(),
                crate::limits::ENVIRONMENTS_YAML,
            )
        {
            return Err(ConfigError::Parse {
                path: path.clone(),
                message,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(root, &path, &text)
    }

    /// Loads `environments.yaml` if present; `None` if the project has none.
    pub fn load_optional(root: &Path) -> Result<Option<Self>, ConfigError> {
        if root.join(CONFIG_FILE).exists() {
            Self::load(root).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Parses and validates the text of `environments.yaml`.
    pub fn parse(root: &Path, path: &Path, text: &str) -> Result<Self, ConfigError> {
        crate::limits::check(
            &path.display().to_string(),
            text.len() as u64,
            crate::limits::ENVIRONMENTS_YAML,
        )
        .and_then(|()| crate::limits::yaml_depth(text))
        .map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let file: ConfigFile = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: describe_yaml_error(&e),
        })?;
        let mut config = Self {
            root: root.to_owned(),
            path: path.to_owned(),
            file,
        };
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        let root = config.root.clone();
        for env in config.file.environments.values_mut() {
            if let Some(spec) = env.targets_file.clone() {
                match read_targets_file(&root, &spec) {
                    Ok(listed) => {
                        let inline: std::collections::HashSet<&str> = env.targets.names().collect();
                        if let Some((name, _)) =
                            listed.iter().find(|(n, _)| inline.contains(n.as_str()))
                        {
                            env.unresolved = Some(format!(
                                "target `{name}` is listed both under targets and in {spec}"
                            ));
                        } else {
                            env.targets.0.extend(listed);
                        }
                    }
                    Err(message) => env.unresolved = Some(message),
                }
            }
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let f = &self.file;
        if !is_identifier(&f.ledger_schema) {
            return Err(format!(
                "ledger_schema `{}` must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)",
                f.ledger_schema
            ));
        }
        if f.environments.is_empty() {
            return Err("environments: at least one environment is needed".into());
        }
        for (name, env) in &f.environments {
            if !is_identifier(name) {
                return Err(format!(
                    "environment name `{name}` must match [a-z_][a-z0-9_]*"
                ));
            }
            if let Some(from) = &env.promote_from {
                if !f.environments.contains_key(from) {
                    return Err(format!(
                        "environments.{name}.promote_from: unknown environment `{from}`"
                    ));
                }
                if from == name {
                    return Err(format!(
                        "environments.{name}.promote_from: promotes from itself"
                    ));
                }
            }
            let fleet = !env.targets.is_empty() || env.targets_file.is_some();
            match (env.database_url.is_empty(), fleet) {
                (true, false) => {
                    return Err(format!(
                        "environments.{name}: needs a database_url (or targets or targets_file, for a fleet)"
                    ));
                }
                (false, true) => {
                    return Err(format!(
                        "environments.{name}: has both database_url and targets; a fleet lists its databases under targets or targets_file only"
                    ));
                }
                _ => {}
            }
            if env
                .targets_file
                .as_deref()
                .is_some_and(|f| f.trim().is_empty())
            {
                return Err(format!(
                    "environments.{name}.targets_file: empty; name the file that lists the targets"
                ));
            }
            for target in env.targets.names() {
                if !is_target_name(target) {
                    return Err(format!(
                        "environments.{name}.targets: target name `{target}` must match [a-z0-9][a-z0-9_-]*"
                    ));
                }
            }
            if fleet
                && let Some((fed, _)) = f
                    .environments
                    .iter()
                    .find(|(_, e)| e.promote_from.as_deref() == Some(name.as_str()))
            {
                return Err(format!(
                    "environments.{fed}.promote_from: `{name}` is a fleet; a fleet cannot feed another environment (which of its targets would it read?)"
                ));
            }
            if let Some(t) = &env.connect_timeout
                && parse_duration(t).is_none()
            {
                return Err(format!(
                    "environments.{name}.connect_timeout: `{t}` is not a duration (e.g. 500ms, 10s, 5min)"
                ));
            }
            for role in env.require.keys() {
                if !f.roles.contains_key(role) {
                    return Err(format!(
                        "environments.{name}.require: role `{role}` has no keyring under `roles`"
                    ));
                }
            }
        }
        // Cycles: following promote_from from any environment must end.
        for start in f.environments.keys() {
            let mut seen = vec![start.as_str()];
            let mut current = start.as_str();
            while let Some(from) = f.environments[current].promote_from.as_deref() {
                if seen.contains(&from) {
                    seen.push(from);
                    return Err(format!("promote_from forms a cycle: {}", seen.join(" → ")));
                }
                seen.push(from);
                current = from;
            }
        }
        for (role, dir) in &f.roles {
            if !is_identifier(role) {
                return Err(format!(
                    "roles: role name `{role}` must match [a-z_][a-z0-9_]*"
                ));
            }
            if dir.is_absolute()
                || dir
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(format!(
                    "roles.{role}: `{}` must be a path inside the project",
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Looks up an environment by name; `ENV/TARGET` names one target of a
    /// fleet, which is then an environment of its own database.
    pub fn environment(&self, name: &str) -> Result<Environment, ConfigError> {
        if let Some((env, target)) = name.split_once('/') {
            let fleet = self.environment(env)?;
            if !fleet.is_fleet() {
                return Err(ConfigError::UnknownTarget {
                    env: env.to_owned(),
                    target: target.to_owned(),
                    known: "none: it is one database, not a fleet".to_owned(),
                });
            }
            return fleet
                .select_targets(&[target.to_owned()])
                .map(|mut found| found.remove(0));
        }
        let Some((name, config)) = self.file.environments.get_key_value(name) else {
            // A branch database is an environment too, known by name.
            let registry = crate::branch::Registry::load(&self.root).map_err(|message| {
                ConfigError::Branch {
                    name: name.to_owned(),
                    message,
                }
            })?;
            if let Some(record) = registry.branches.get(name) {
                return crate::branch::environment(self, name, record).map_err(|message| {
                    ConfigError::Branch {
                        name: name.to_owned(),
                        message,
                    }
                });
            }
            return Err(ConfigError::UnknownEnvironment {
                name: name.to_owned(),
                known: self
                    .file
                    .environments
                    .keys()
                    .chain(registry.branches.keys())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        Ok(Environment {
            name: name.clone(),
            target: None,
            config: config.clone(),
        })
    }

    /// Environments in pipeline order: sources before the environments they feed.
    pub fn pipeline(&self) -> Vec<Environment> {
        let envs = &self.file.environments;
        fn depth<'a>(envs: &'a BTreeMap<String, EnvironmentConfig>, mut name: &'a str) -> usize {
            let mut d = 0;
            while let Some(from) = envs[name].promote_from.as_deref() {
                d += 1;
                name = from;
            }
            d
        }
        let mut out: Vec<Environment> = envs
            .iter()
            .map(|(name, config)| Environment {
                name: name.clone(),
                target: None,
                config: config.clone(),
            })
            .collect();
        out.sort_by_key(|e| (depth(envs, &e.name), e.name.clone()));
        out
    }

    /// Role keyrings as absolute directories.
    pub fn role_dirs(&self) -> Vec<(String, PathBuf)> {
        role_dirs(&self.root, &self.file.roles)
    }
}

/// Role keyrings of `roles`, resolved against the project root.
pub fn role_dirs(root: &Path, roles: &BTreeMap<String, PathBuf>) -> Vec<(String, PathBuf)> {
    roles
        .iter()
        .map(|(r, d)| (r.clone(), root.join(d)))
        .collect()
}

/// A chosen environment, owned: environments may also come from elsewhere
/// than the file (branches, fleet targets).
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    /// The target of a fleet this is (`prd/acme` is `prd`, target `acme`).
    pub target: Option<String>,
    pub config: EnvironmentConfig,
}

impl Environment {
    /// Whether this is a fleet (an environment with `targets`), not one database.
    pub fn is_fleet(&self) -> bool {
        !self.config.targets.is_empty() || self.config.targets_file.is_some()
    }

    /// The targets of a fleet, each an environment of its own database
    /// (same name, policy and settings), in the order written; empty for
    /// one database. A fleet whose `targets_file` could not be read is
    /// itself the one entry, and naming its database says why (so a
    /// status of every environment shows it as not reachable).
    pub fn targets(&self) -> Vec<Environment> {
        if self.config.unresolved.is_some() {
            return vec![self.clone()];
        }
        // Each target's settings without the list (cloning the list for
        // every target would be quadratic in a fleet of thousands).
        let mut base = self.config.clone();
        base.targets.clear();
        base.targets_file = None;
        self.config
            .targets
            .iter()
            .map(|(target, url)| {
                let mut config = base.clone();
                config.database_url = url.to_owned();
                Environment {
                    name: self.name.clone(),
                    target: Some(target.to_owned()),
                    config,
                }
            })
            .collect()
    }

    /// The targets named in `names` (all of them when `names` is empty),
    /// in the order written; an unknown name is an error that lists the
    /// fleet's targets.
    pub fn select_targets(&self, names: &[String]) -> Result<Vec<Environment>, ConfigError> {
        self.resolved()?;
        if let Some(unknown) = names.iter().find(|n| !self.config.targets.contains(n)) {
            return Err(ConfigError::UnknownTarget {
                env: self.name.clone(),
                target: unknown.clone(),
                known: self.target_names(),
            });
        }
        let mut targets = self.targets();
        if !names.is_empty() {
            targets.retain(|t| t.target.as_ref().is_some_and(|n| names.contains(n)));
        }
        Ok(targets)
    }

    /// The fleet's target names, for messages: `acme, globex`.
    pub fn target_names(&self) -> String {
        if self.config.unresolved.is_some() {
            return "unknown: its targets_file could not be read".to_owned();
        }
        first_names(self.config.targets.names(), self.config.targets.len())
    }

    /// The target at place `index` of the fleet's list (0 for the first,
    /// in the order written): one job of an indexed job engine.
    pub fn target_at(&self, index: usize) -> Result<Environment, ConfigError> {
        let mut all = self.select_targets(&[])?;
        if index >= all.len() {
            return Err(ConfigError::NoTargetAt {
                env: self.name.clone(),
                count: all.len(),
                known: self.target_names(),
            });
        }
        Ok(all.swap_remove(index))
    }

    /// `Err` with why, when the fleet's `targets_file` could not be read.
    fn resolved(&self) -> Result<(), ConfigError> {
        match &self.config.unresolved {
            Some(message) => Err(ConfigError::TargetsFile {
                env: self.name.clone(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// `prd` or, for a target of a fleet, `prd/acme`.
    pub fn label(&self) -> String {
        match &self.target {
            Some(t) => format!("{}/{t}", self.name),
            None => self.name.clone(),
        }
    }

    /// The receipt key, `${VAR}`s resolved; `None` if it has none.
    pub fn receipt_key(&self) -> Result<Option<String>, ConfigError> {
        let Some(spec) = &self.config.receipt_key else {
            return Ok(None);
        };
        // `${QAT_RECEIPT_KEY:-}` makes the key optional: empty means none.
        interpolate(spec, |v| std::env::var(v).ok())
            .map(|v| Some(v).filter(|v| !v.trim().is_empty()))
            .map_err(|var| ConfigError::MissingReceiptKey {
                env: self.name.clone(),
                var,
            })
    }

    /// How long to wait for a connection to it.
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.config
            .connect_timeout
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// The database URL with `${VAR}` resolved from the process environment.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        self.resolved()?;
        if self.is_fleet() {
            return Err(ConfigError::Fleet {
                env: self.name.clone(),
                targets: self.target_names(),
            });
        }
        let url =
            interpolate(&self.config.database_url, |v| std::env::var(v).ok()).map_err(|var| {
                ConfigError::MissingVariable {
                    env: self.label(),
                    var,
                }
            })?;
        match &self.config.database {
            None => Ok(url),
            Some(db) => {
                crate::db::conninfo::with_dbname(&url, db).map_err(|message| ConfigError::Branch {
                    name: self.name.clone(),
                    message,
                })
            }
        }
    }
}

/// Reads the targets file `spec` names (`${VAR}`s resolved, relative to
/// `root`); errors name the file and the line.
fn read_targets_file(root: &Path, spec: &str) -> Result<Vec<(String, String)>, String> {
    let file = interpolate(spec, |v| std::env::var(v).ok())
        .map_err(|var| format!("`{spec}` refers to ${{{var}}}, which is not set"))?;
    let path = root.join(&file);
    let shown = path.display().to_string();
    let bytes = crate::limits::read(&path, crate::limits::TARGETS_FILE)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8"))?;
    parse_targets_file(&text).map_err(|e| format!("{shown}: {e}"))
}

fn is_target_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        && s.len() <= 63
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && s.len() <= 63
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. Returns the
/// name of the first unset variable without a default.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body_start) = rest.strip_prefix("${") {
            let Some(end) = body_start.find('}') else {
                out.push_str(rest);
                return Ok(out);
            };
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(name.to_owned()),
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The template `promoter init` writes (the one in DESIGN.md).
pub const TEMPLATE: &str = "\
# promoter: environments, pipeline order and signature requirements.
# Secrets never live here: ${VAR} is read from the environment, and libpq's
# PGPASSFILE / ~/.pgpass and sslmode=... in the URL work as usual.
ledger_schema: promoter
environments:
  dev:
    database_url: ${DEV_DATABASE_URL}      # ${VAR} is read from the environment
  qat:
    database_url: ${QAT_DATABASE_URL}
    promote_from: dev
    require: { developer: 1 }
    receipt_key: ${QAT_RECEIPT_KEY}        # QAT signs every ledger row it writes
  prd:
    database_url: ${PRD_DATABASE_URL}
    promote_from: qat
    require: { developer: 1, customer: 1 }
    confirm: true                          # asks before applying unless --yes
roles:
  developer: keys/developers
  customer: keys/customers
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/p"), Path::new("environments.yaml"), text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn template_parses_and_orders_the_pipeline() {
        let c = parse(TEMPLATE).unwrap();
        let names: Vec<String> = c.pipeline().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["dev", "qat", "prd"]);
        let prd = c.environment("prd").unwrap();
        assert!(prd.config.confirm);
        assert_eq!(prd.config.require["customer"], 1);
    }

    #[test]
    fn invalid_configurations_name_the_problem() {
        let base = "environments:\n  dev:\n    database_url: x\n";
        let cases: &[(String, &str)] = &[
            (format!("{base}  qat:\n    database_url: y\n    promote_from: nope\n"), "unknown environment `nope`"),
            (
                "environments:\n  a:\n    database_url: x\n    promote_from: b\n  b:\n    database_url: y\n    promote_from: a\n".into(),
                "cycle",
            ),
            (format!("{base}    require: {{ auditor: 1 }}\n"), "role `auditor` has no keyring"),
            (format!("{base}    colour: red\n"), "unknown field `colour`"),
            (format!("{base}    colour: red\n"), "line 4"),
            ("environments: {}\n".into(), "at least one environment"),
            (format!("ledger_schema: Bad-Name\n{base}"), "ledger_schema"),
            (format!("{base}roles:\n  developer: ../outside\n"), "inside the project"),
            (format!("{base}  dev:\n    database_url: z\n"), "duplicate"),
            (format!("{base}  prd:\n    promote_from: dev\n"), "needs a database_url (or targets"),
            (
                format!("{base}  prd:\n    database_url: y\n    targets: {{ a: z }}\n"),
                "both database_url and targets",
            ),
            (format!("{base}  prd:\n    targets: {{ Bad: z }}\n"), "target name `Bad`"),
            (format!("{base}  prd:\n    targets: {{ a: y, a: z }}\n"), "duplicate"),
            (
                "environments:\n  a:\n    targets: { x: y }\n  b:\n    database_url: z\n    promote_from: a\n".into(),
                "a fleet cannot feed another environment",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}\n→ {err}\n(wanted {want})");
        }
    }

    #[test]
    fn a_target_of_a_fleet_is_an_environment_of_its_own_database() {
        let c = Config::parse(
            Path::new("/p"),
            Path::new("/p/environments.yaml"),
            "environments:\n  qat:\n    database_url: q\n  prd:\n    promote_from: qat\n    targets:\n      acme: postgres://a/acme\n      globex: postgres://g/globex\n",
        )
        .unwrap();
        let prd = c.environment("prd").unwrap();
        assert!(prd.is_fleet());
        assert!(
            prd.database_url()
                .unwrap_err()
                .to_string()
                .contains("name one target as prd/TARGET")
        );
        let acme = c.environment("prd/acme").unwrap();
        assert_eq!(
            (acme.name.as_str(), acme.label()),
            ("prd", "prd/acme".to_owned())
        );
        assert_eq!(acme.database_url().unwrap(), "postgres://a/acme");
        assert_eq!(acme.config.promote_from.as_deref(), Some("qat"));
        let err = c.environment("prd/nope").unwrap_err().to_string();
        assert!(
            err.contains("no target `nope` (its targets: acme, globex)"),
            "{err}"
        );
        assert!(c.environment("qat/x").is_err());
    }

    const FLEET_BASE: &str =
        "environments:\n  qat:\n    database_url: q\n  prd:\n    promote_from: qat\n";

    fn names(targets: &[Environment]) -> Vec<String> {
        targets
            .iter()
            .map(|t| t.target.clone().unwrap_or_default())
            .collect()
    }

    /// Regression: targets were kept sorted by name, so `--canary 1` took
    /// `alpha`, not the target written first as the docs say.
    #[test]
    fn fleet_targets_keep_the_order_they_are_written_in() {
        let c = parse(&format!(
            "{FLEET_BASE}    targets:\n      zeta: postgres://z/p\n      alpha: postgres://a/p\n      mid: postgres://m/p\n"
        ))
        .unwrap();
        let prd = c.environment("prd").unwrap();
        assert_eq!(names(&prd.targets()), ["zeta", "alpha", "mid"]);
        assert_eq!(prd.target_names(), "zeta, alpha, mid");
        let some = prd
            .select_targets(&["mid".to_owned(), "zeta".to_owned()])
            .unwrap();
        assert_eq!(names(&some), ["zeta", "mid"]);
        // By place, for an indexed job: the order written.
        assert_eq!(prd.target_at(1).unwrap().target.as_deref(), Some("alpha"));
        assert_eq!(
            prd.target_at(3).unwrap_err().to_string(),
            "prd has 3 targets, at places 0 to 2 (zeta, alpha, mid)"
        );
    }

    #[test]
    fn a_targets_file_lists_a_fleet_after_its_inline_targets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prd-targets"),
            "# customers\n\nglobex\tpostgres://g/prd\n  initech   ${INITECH_URL:-postgres://i/prd}  \n",
        )
        .unwrap();
        let text = format!(
            "{FLEET_BASE}    targets:\n      acme: postgres://a/prd\n    targets_file: prd-targets\n"
        );
        let c = Config::parse(dir.path(), Path::new("environments.yaml"), &text).unwrap();
        let prd = c.environment("prd").unwrap();
        let targets = prd.targets();
        assert_eq!(names(&targets), ["acme", "globex", "initech"]);
        // Thousands of targets: each cheap to make, and named in messages
        // by the first few.
        let many: String = (0..5000)
            .map(|i| format!("c{i} postgres://h/c{i}\n"))
            .collect();
        std::fs::write(dir.path().join("many"), many).unwrap();
        let big = Config::parse(
            dir.path(),
            Path::new("environments.yaml"),
            &format!("{FLEET_BASE}    targets_file: many\n"),
        )
        .unwrap();
        let fleet = big.environment("prd").unwrap();
        assert_eq!(fleet.targets().len(), 5000);
        assert!(fleet.targets()[4999].config.targets.is_empty());
        assert_eq!(
            fleet.target_names(),
            "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 4990 more"
        );
        let err = big.environment("prd/nope").unwrap_err().to_string();
        assert!(err.ends_with("c9 and 4990 more)"), "{err}");
        assert_eq!(targets[2].database_url().unwrap(), "postgres://i/prd");
        let one = c.environment("prd/globex").unwrap();
        assert_eq!(one.database_url().unwrap(), "postgres://g/prd");
        assert!(!one.is_fleet());
    }

    #[test]
    fn a_targets_file_that_cannot_be_used_is_refused_naming_the_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("acme\n", "prd-targets: line 1: expected `NAME URL`"),
            (
                "acme postgres://u:secret@a/p extra\n",
                "line 1: expected `NAME URL` (a target name, then its database URL), found 3 fields",
            ),
            ("# none\n\n", "prd-targets: lists no targets"),
            (
                "Acme postgres://a/p\n",
                "line 1: target name `Acme` must match",
            ),
            (
                "a postgres://a/p\nb postgres://b/p\na postgres://c/p\n",
                "line 3: target `a` is listed twice (first at line 1)",
            ),
            (
                "x postgres://x/p\nacme postgres://a2/p\n",
                "target `acme` is listed both under targets and in prd-targets",
            ),
        ];
        for (file, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("prd-targets"), file).unwrap();
            let text = format!(
                "{FLEET_BASE}    targets:\n      acme: postgres://a/prd\n    targets_file: prd-targets\n"
            );
            // The file is read at load, but only the fleet is refused:
            // the other environments still work.
            let c = Config::parse(dir.path(), Path::new("environments.yaml"), &text).unwrap();
            assert_eq!(c.environment("qat").unwrap().database_url().unwrap(), "q");
            let prd = c.environment("prd").unwrap();
            let err = prd.select_targets(&[]).unwrap_err().to_string();
            assert!(err.contains(want), "{file:?}: {err}");
            assert!(!err.contains("secret"), "{err}");
            assert!(
                err.starts_with("environment `prd`: targets_file: "),
                "{err}"
            );
            // Where one database is read (status), the fleet says why.
            let all = prd.targets();
            assert_eq!(all.len(), 1);
            let err = all[0].database_url().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            let err = c.environment("prd/acme").unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        // A file that is not there, or named by a variable that is not set.
        let dir = tempfile::tempdir().unwrap();
        for (spec, want) in [
            ("missing-file", "missing-file: No such file"),
            // A device reports no size: never read past the limit.
            ("/dev/zero", "more than the 4194304 bytes allowed"),
            (
                "${PROMOTER_TEST_NO_SUCH_VARIABLE}",
                "refers to ${PROMOTER_TEST_NO_SUCH_VARIABLE}, which is not set",
            ),
        ] {
            let text = format!("{FLEET_BASE}    targets_file: {spec}\n");
            let c = Config::parse(dir.path(), Path::new("environments.yaml"), &text).unwrap();
            let err = c
                .environment("prd")
                .unwrap()
                .select_targets(&[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
        // Not both a database_url and a targets_file; nor an empty one.
        for (text, want) in [
            (
                format!("{FLEET_BASE}    database_url: p\n    targets_file: f\n"),
                "has both database_url and targets",
            ),
            (
                format!("{FLEET_BASE}    targets_file: ''\n"),
                "targets_file: empty",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn unknown_environment_lists_the_known_ones() {
        let c = parse(TEMPLATE).unwrap();
        let err = c.environment("uat").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown environment `uat` (environments.yaml defines: dev, prd, qat)"
        );
    }

    #[test]
    fn interpolation_handles_defaults_escapes_and_missing_variables() {
        let lookup = |v: &str| match v {
            "HOST" => Some("db.local".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("postgres://${HOST}/x", Ok("postgres://db.local/x")),
            ("${PORT:-5432}", Ok("5432")),
            ("${EMPTY:-fallback}", Ok("fallback")),
            ("a$$b", Ok("a$b")),
            ("cost $5", Ok("cost $5")),
            ("${MISSING}", Err("MISSING")),
            ("${HOST", Ok("${HOST")),
        ];
        for (text, want) in cases {
            let got = interpolate(text, lookup);
            assert_eq!(got.as_deref().map_err(String::as_str), *want, "{text}");
        }
    }
}
