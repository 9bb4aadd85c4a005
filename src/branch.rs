//! Branch databases (`promoter branch`): the rules for their names and
//! sources, and the project's record of them, `.promoter/branches.yaml`.
//!
//! `master` holds the released base, `develop` the day-to-day work;
//! `feature_<name>` is made from `develop`, `bugfix_<name>` only from
//! `master`, `test_<name>` from anything (as close to production as
//! possible). A branch is an environment without `promote_from` that every
//! command knows by name, in the cluster of the environment it descends
//! from (or the one `branches.database_url` names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment};

/// Where the record lives, under the project root (git-ignored by `init`:
/// branches are databases of a developer's or a team's cluster, not of the
/// repository).
pub const REGISTRY: &str = ".promoter/branches.yaml";

/// A branch's kind, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Master,
    Develop,
    Feature,
    Bugfix,
    Test,
}

impl Kind {
    /// The kind of `name`, or why it is not a branch name.
    pub fn of(name: &str) -> Result<Self, String> {
        let rules = "branch names are master, develop, feature_<name>, bugfix_<name> or test_<name>, \
                     <name> in [a-z0-9_], at most 40 characters";
        let slug_ok = |slug: &str| {
            !slug.is_empty()
                && slug.len() <= 40
                && slug
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && slug
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let kind = match name {
            "master" => return Ok(Self::Master),
            "develop" => return Ok(Self::Develop),
            _ => match name.split_once('_') {
                Some(("feature", slug)) => (Self::Feature, slug),
                Some(("bugfix", slug)) => (Self::Bugfix, slug),
                Some(("test", slug)) => (Self::Test, slug),
                _ => return Err(format!("`{name}`: {rules}")),
            },
        };
        if !slug_ok(kind.1) {
            return Err(format!("`{name}`: {rules}"));
        }
        Ok(kind.0)
    }

    /// The source a branch of this kind is made from when `--from` is not given.
    pub fn default_from(self) -> Option<&'static str> {
        match self {
            Self::Feature => Some("develop"),
            Self::Bugfix => Some("master"),
            Self::Develop => Some("master"),
            Self::Master | Self::Test => None,
        }
    }

    /// Whether a branch of this kind may be made from `from` (a branch name,
    /// or an environment when `from_is_env`).
    pub fn check_from(self, name: &str, from: &str, from_is_env: bool) -> Result<(), String> {
        let ok = match self {
            Self::Feature => from == "develop",
            Self::Bugfix => from == "master",
            Self::Develop => from == "master" || from_is_env,
            Self::Master => from_is_env,
            Self::Test => true,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Self::Feature => format!("{name}: a feature branch is made from develop, not {from}"),
            Self::Bugfix => format!(
                "{name}: a bugfix branch is made from master (the released base), not {from}"
            ),
            Self::Develop => {
                format!("{name}: develop is made from master or an environment, not {from}")
            }
            Self::Master => format!(
                "{name}: master holds the released base and is made from an environment (e.g. --from prd), not the branch {from}"
            ),
            Self::Test => unreachable!("a test branch may come from anything"),
        })
    }
}

/// One branch, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The environment or branch it was made from.
    pub from: String,
    /// The environment it descends from, whose connection settings it uses
    /// unless `branches.database_url` is configured.
    pub root: String,
    /// Its database's name.
    pub database: String,
    /// Whether it lives in the `branches.database_url` cluster.
    #[serde(default)]
    pub in_branch_cluster: bool,
    /// `template` or `dump`, and when and by whom (RFC 3339, `user@host`).
    pub method: String,
    pub created_at: String,
    pub created_by: String,
}

/// `.promoter/branches.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub branches: BTreeMap<String, Record>,
}

impl Registry {
    pub fn path(root: &Path) -> PathBuf {
        root.join(REGISTRY)
    }

    /// The record, or an empty one when there is none yet.
    pub fn load(root: &Path) -> Result<Self, String> {
        let path = Self::path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        crate::limits::check(
            &path.display().to_string(),
            text.len() as u64,
            crate::limits::SMALL_FILE,
        )?;
        serde_yaml_ng::from_str(&text).map_err(|e| {
            format!(
                "{}: {}",
                path.display(),
                crate::config::describe_yaml_error(&e)
            )
        })
    }

    /// Writes the record whole (a temporary file renamed over it).
    pub fn save(&self, root: &Path) -> Result<(), String> {
        let path = Self::path(root);
        let dir = path.parent().expect("the registry has a directory");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = format!(
            "# promoter's branch databases (promoter branch list); written by promoter\n{}",
            serde_yaml_ng::to_string(self).map_err(|e| e.to_string())?
        );
        let tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(tmp.path(), text).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
        tmp.persist(&path)
            .map_err(|e| format!("{}: {}", path.display(), e.error))?;
        Ok(())
    }
}

/// The environment a branch is: its root's connection (or the branch
/// cluster's) with its own database, no `promote_from`, and the signature
/// requirements of the pipeline's first environment (DEV's), never a
/// controlled environment's approvals, which only a test environment's
/// receipts could meet.
pub fn environment(config: &Config, name: &str, record: &Record) -> Result<Environment, String> {
    let root = config
        .environment(&record.root)
        .map_err(|e| format!("branch {name}: {e}"))?;
    let dev = config
        .pipeline()
        .into_iter()
        .find(|e| e.config.promote_from.is_none());
    let mut env_config = root.config.clone();
    if record.in_branch_cluster {
        env_config.database_url = config.file.branches.database_url.clone().ok_or_else(|| {
            format!(
                "branch {name} lives in the branch cluster, but environments.yaml has no branches.database_url"
            )
        })?;
    }
    // The record names a database; it must be the one promoter gives this
    // branch, so that an edited record cannot point `branch drop` (or an
    // apply) at another database of the cluster, such as DEV's own.
    let root_db = root
        .database_url()
        .map_err(|e| format!("branch {name}: {e}"))
        .and_then(|url| {
            crate::db::conninfo::dbname(&url).map_err(|e| format!("branch {name}: {e}"))
        })?
        .ok_or_else(|| {
            format!(
                "branch {name}: {}'s database_url names no database",
                record.root
            )
        })?;
    let want = database_name(&root_db, name)?;
    if record.database != want {
        return Err(format!(
            "{REGISTRY} records database {} for branch {name}, but a branch of {} by that name is {want}: the record was edited; promoter uses no other database for it",
            record.database, record.root
        ));
    }
    env_config.database = Some(record.database.clone());
    env_config.promote_from = None;
    env_config.targets.clear();
    env_config.targets_file = None;
    env_config.unresolved = None;
    env_config.confirm = false;
    env_config.receipt_key = None;
    env_config.require = dev.map(|d| d.config.require).unwrap_or_default();
    Ok(Environment {
        name: name.to_owned(),
        target: None,
        config: env_config,
    })
}

/// The database name of a branch: its root's, then `_`, then the branch's
/// name (at most 63 bytes, PostgreSQL's limit).
pub fn database_name(root_database: &str, branch: &str) -> Result<String, String> {
    let name = format!("{root_database}_{branch}");
    if name.len() > 63 {
        return Err(format!(
            "the branch database would be named {name}, longer than PostgreSQL's 63 bytes: use a shorter branch name"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_and_their_sources_follow_the_practice() {
        for (name, want) in [
            ("master", Ok(Kind::Master)),
            ("develop", Ok(Kind::Develop)),
            ("feature_login", Ok(Kind::Feature)),
            ("bugfix_1234", Ok(Kind::Bugfix)),
            ("test_perf_2", Ok(Kind::Test)),
            ("feature_", Err(())),
            ("feature_Login", Err(())),
            ("feature_a-b", Err(())),
            ("feature__x", Err(())),
            ("hotfix_x", Err(())),
            ("dev", Err(())),
            ("", Err(())),
        ] {
            assert_eq!(Kind::of(name).map_err(|_| ()), want, "{name:?}");
        }
        assert!(Kind::of(&format!("test_{}", "x".repeat(41))).is_err());
        for (name, from, is_env, ok) in [
            ("feature_a", "develop", false, true),
            ("feature_a", "master", false, false),
            ("feature_a", "dev", true, false),
            ("bugfix_a", "master", false, true),
            ("bugfix_a", "develop", false, false),
            ("bugfix_a", "prd", true, false),
            ("master", "prd", true, true),
            ("master", "develop", false, false),
            ("develop", "master", false, true),
            ("develop", "dev", true, true),
            ("develop", "feature_x", false, false),
            ("test_a", "prd", true, true),
            ("test_a", "feature_x", false, true),
        ] {
            let kind = Kind::of(name).unwrap();
            assert_eq!(
                kind.check_from(name, from, is_env).is_ok(),
                ok,
                "{name} from {from}"
            );
        }
        assert_eq!(Kind::Feature.default_from(), Some("develop"));
        assert_eq!(Kind::Bugfix.default_from(), Some("master"));
        assert_eq!(Kind::Master.default_from(), None);
    }

    #[test]
    fn branch_database_names_stay_within_postgres_limits() {
        assert_eq!(
            database_name("shop", "feature_login").unwrap(),
            "shop_feature_login"
        );
        assert!(database_name(&"s".repeat(30), &format!("test_{}", "x".repeat(30))).is_err());
    }
}
