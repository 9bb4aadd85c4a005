//! Pure planning: given the bundles, the ledgers and the requirements, what
//! will be applied — or every reason it cannot go. Nothing here touches a
//! database, so every promotion rule is a unit test with in-memory values.

use crate::changeset::ChangesetId;

/// A changeset as a ledger records it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub changeset_id: String,
    pub bundle_hash: String,
    /// The ledger row's `entry_hash` (what a promotion from here links to).
    pub entry_hash: String,
}

/// What the checks found about a bundle (from git or the work tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFacts {
    pub id: ChangesetId,
    /// `None` if not sealed.
    pub hash: Option<String>,
    /// Everything that keeps it from being applied: file problems, script
    /// problems, unmet signature requirements.
    pub problems: Vec<String>,
}

/// One changeset to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub changeset_id: String,
    pub bundle_hash: String,
    /// The source environment's ledger entry, when promoting.
    pub source_entry: Option<String>,
}

/// Plans `promote FROM TO`: candidates are FROM's applied changesets that TO
/// lacks, in FROM's order; TO's applied sequence must be a prefix of FROM's.
pub fn plan_promotion(
    from_env: &str,
    to_env: &str,
    from: &[Applied],
    to: &[Applied],
    bundles: &[BundleFacts],
) -> Result<Vec<Step>, Vec<String>> {
    let mut reasons = Vec::new();
    let diverges = to.len() > from.len()
        || to
            .iter()
            .zip(from)
            .any(|(t, f)| t.changeset_id != f.changeset_id || t.bundle_hash != f.bundle_hash);
    if diverges {
        let list = |v: &[Applied]| {
            if v.is_empty() {
                "(nothing)".to_owned()
            } else {
                v.iter()
                    .map(|a| {
                        format!(
                            "{} {}",
                            a.changeset_id,
                            &a.bundle_hash[..12.min(a.bundle_hash.len())]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        reasons.push(format!(
            "{to_env} has diverged from {from_env}: {to_env}'s applied changesets must be a prefix of {from_env}'s\n  {from_env}: {}\n  {to_env}: {}",
            list(from),
            list(to)
        ));
        return Err(reasons);
    }
    let mut steps = Vec::new();
    for candidate in &from[to.len()..] {
        let id = &candidate.changeset_id;
        let Some(bundle) = bundles.iter().find(|b| b.id.as_str() == id) else {
            reasons.push(format!(
                "{id} is applied to {from_env} but is not in the repository at this revision"
            ));
            continue;
        };
        match &bundle.hash {
            None => reasons.push(format!("{id} is not sealed at this revision")),
            Some(hash) if *hash != candidate.bundle_hash => reasons.push(format!(
                "{id} changed since it was applied to {from_env}: {from_env} has {}, rev has {hash}",
                candidate.bundle_hash
            )),
            Some(_) => {}
        }
        reasons.extend(bundle.problems.iter().map(|p| format!("{id}: {p}")));
        steps.push(Step {
            changeset_id: id.clone(),
            bundle_hash: candidate.bundle_hash.clone(),
            source_entry: Some(candidate.entry_hash.clone()),
        });
    }
    if reasons.is_empty() {
        Ok(steps)
    } else {
        Err(reasons)
    }
}

/// Plans `apply ENV`: the pending bundles in order (or only `only`, which must
/// be next in line). Applied bundles must be unchanged, and nothing may be
/// older than what is already applied.
pub fn plan_apply(
    env: &str,
    applied: &[Applied],
    bundles: &[BundleFacts],
    only: &[ChangesetId],
) -> Result<Vec<Step>, Vec<String>> {
    let mut reasons = Vec::new();
    for a in applied {
        match bundles.iter().find(|b| b.id.as_str() == a.changeset_id) {
            None => reasons.push(format!(
                "{} is applied to {env} but missing from changesets/",
                a.changeset_id
            )),
            Some(b) if b.hash.as_deref() != Some(a.bundle_hash.as_str()) => reasons.push(format!(
                "{} changed since it was applied to {env}: {env} has {}, the work tree has {}",
                a.changeset_id,
                a.bundle_hash,
                b.hash.as_deref().unwrap_or("no SHA256SUMS")
            )),
            Some(_) => {}
        }
    }
    let newest_applied = bundles
        .iter()
        .filter(|b| applied.iter().any(|a| a.changeset_id == b.id.as_str()))
        .map(|b| &b.id)
        .max();
    let mut pending: Vec<&BundleFacts> = bundles
        .iter()
        .filter(|b| !applied.iter().any(|a| a.changeset_id == b.id.as_str()))
        .collect();
    pending.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(newest) = newest_applied {
        for p in pending.iter().filter(|p| p.id < *newest) {
            reasons.push(format!(
                "{} is older than {newest}, which is already applied to {env}: changesets apply in number order; renumber it after {newest}",
                p.id
            ));
        }
    }
    if !only.is_empty() {
        let mut wanted: Vec<&ChangesetId> = only.iter().collect();
        wanted.sort();
        for (i, w) in wanted.iter().enumerate() {
            if applied.iter().any(|a| a.changeset_id == w.as_str()) {
                reasons.push(format!("{w} is already applied to {env}"));
            } else if pending.get(i).map(|p| &p.id) != Some(*w) {
                let next = pending
                    .get(i)
                    .map_or("nothing".to_owned(), |p| p.id.to_string());
                reasons.push(format!(
                    "{w} is not next in line for {env}: {next} must be applied first"
                ));
            }
        }
        pending.truncate(wanted.len());
    }
    let mut steps = Vec::new();
    for b in pending {
        match &b.hash {
            None => reasons.push(format!(
                "{} is not sealed; run `promoter seal {}`",
                b.id, b.id
            )),
            Some(hash) => steps.push(Step {
                changeset_id: b.id.to_string(),
                bundle_hash: hash.clone(),
                source_entry: None,
            }),
        }
        reasons.extend(b.problems.iter().map(|p| format!("{}: {p}", b.id)));
    }
    if reasons.is_empty() {
        Ok(steps)
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ChangesetId {
        ChangesetId::parse(s).unwrap()
    }

    fn applied(id: &str, hash: &str) -> Applied {
        Applied {
            changeset_id: id.into(),
            bundle_hash: hash.repeat(64 / hash.len()),
            entry_hash: format!("entry-{id}"),
        }
    }

    fn facts(i: &str, hash: &str, problems: &[&str]) -> BundleFacts {
        BundleFacts {
            id: id(i),
            hash: Some(hash.repeat(64 / hash.len())),
            problems: problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn ids(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.changeset_id.as_str()).collect()
    }

    #[test]
    fn promotion_takes_what_the_source_has_and_the_target_lacks_in_source_order() {
        let from = [
            applied("0001-a", "a"),
            applied("0002-b", "b"),
            applied("0003-c", "c"),
        ];
        let to = [applied("0001-a", "a")];
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-c", "c", &[]),
            facts("0004-d", "d", &[]),
        ];
        let steps = plan_promotion("qat", "prd", &from, &to, &bundles).unwrap();
        assert_eq!(ids(&steps), ["0002-b", "0003-c"]);
        assert_eq!(steps[0].source_entry.as_deref(), Some("entry-0002-b"));
        assert!(
            plan_promotion("qat", "prd", &from, &from, &bundles)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn promotion_refuses_with_a_reason_per_changeset() {
        let from = [
            applied("0001-a", "a"),
            applied("0002-b", "b"),
            applied("0003-c", "c"),
            applied("0004-d", "d"),
        ];
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "f", &[]),
            facts(
                "0003-c",
                "c",
                &["needs 1 customer signature from distinct certificates, has 0"],
            ),
        ];
        let reasons = plan_promotion("qat", "prd", &from, &[], &bundles).unwrap_err();
        assert_eq!(reasons.len(), 3, "{reasons:#?}");
        assert!(
            reasons[0].starts_with("0002-b changed since it was applied to qat: qat has bbbb"),
            "{}",
            reasons[0]
        );
        assert!(reasons[0].contains("rev has ffff"), "{}", reasons[0]);
        assert_eq!(
            reasons[1],
            "0003-c: needs 1 customer signature from distinct certificates, has 0"
        );
        assert_eq!(
            reasons[2],
            "0004-d is applied to qat but is not in the repository at this revision"
        );
    }

    #[test]
    fn promotion_refuses_a_diverged_target() {
        let from = [applied("0001-a", "a"), applied("0002-b", "b")];
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-x", "e", &[]),
        ];
        for to in [
            vec![applied("0002-b", "b")],
            vec![applied("0001-a", "9")],
            vec![
                applied("0001-a", "a"),
                applied("0002-b", "b"),
                applied("0003-x", "e"),
            ],
        ] {
            let reasons = plan_promotion("qat", "prd", &from, &to, &bundles).unwrap_err();
            assert!(
                reasons[0].starts_with("prd has diverged from qat"),
                "{reasons:?}"
            );
            assert!(
                reasons[0].contains("qat: 0001-a aaaaaaaaaaaa, 0002-b bbbbbbbbbbbb"),
                "{reasons:?}"
            );
        }
    }

    #[test]
    fn apply_takes_pending_in_number_order() {
        let bundles = [
            facts("0002-b", "b", &[]),
            facts("0001-a", "a", &[]),
            facts("0010-c", "c", &[]),
        ];
        let steps = plan_apply("dev", &[applied("0001-a", "a")], &bundles, &[]).unwrap();
        assert_eq!(ids(&steps), ["0002-b", "0010-c"]);
        let steps =
            plan_apply("dev", &[applied("0001-a", "a")], &bundles, &[id("0002-b")]).unwrap();
        assert_eq!(ids(&steps), ["0002-b"]);
    }

    #[test]
    fn apply_refuses_changed_missing_out_of_order_unsealed_and_skipping() {
        let mut unsealed = facts("0005-e", "e", &[]);
        unsealed.hash = None;
        let bundles = [
            facts("0001-a", "9", &[]),
            facts("0002-b", "b", &[]),
            facts("0004-d", "d", &["files differ"]),
            unsealed,
        ];
        let applied_rows = [applied("0001-a", "a"), applied("0003-c", "c")];
        let reasons = plan_apply("dev", &applied_rows, &bundles, &[]).unwrap_err();
        let joined = reasons.join("\n");
        for want in [
            "0001-a changed since it was applied to dev",
            "0003-c is applied to dev but missing from changesets/",
            "0005-e is not sealed; run `promoter seal 0005-e`",
            "0004-d: files differ",
        ] {
            assert!(joined.contains(want), "wanted {want:?} in\n{joined}");
        }
        let bundles = [
            facts("0001-a", "a", &[]),
            facts("0002-b", "b", &[]),
            facts("0003-c", "c", &[]),
        ];
        let reasons =
            plan_apply("dev", &[applied("0001-a", "a")], &bundles, &[id("0003-c")]).unwrap_err();
        assert_eq!(
            reasons,
            ["0003-c is not next in line for dev: 0002-b must be applied first"]
        );
        let reasons = plan_apply("dev", &[applied("0002-b", "b")], &bundles, &[]).unwrap_err();
        assert!(
            reasons[0].starts_with("0001-a is older than 0002-b"),
            "{reasons:?}"
        );
    }
}
