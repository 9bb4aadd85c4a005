//! The offline half: init, new, seal, sign, approve, verify, keys — and every
//! way a bundle or a signature can be tampered with.

use crate::common::{TestContext, names};

const SQL: &str = "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);\n";

/// A project with one sealed changeset signed by a promoter-made developer key.
fn signed_project() -> (TestContext, String, String) {
    let t = TestContext::new();
    let id = t.changeset("add-customers", SQL);
    t.promoter(&["seal"]).ok();
    let (dev, secret) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    t.promoter(&["sign", &id, "--key", secret.to_str().unwrap()])
        .ok();
    (t, id, dev)
}

#[test]
fn new_user_session_with_gpg_and_a_customer_approval() {
    let t = TestContext::new();
    assert!(t.path("environments.yaml").exists());
    assert!(t.read(".gitattributes").contains("changesets/** -text"));
    let id = t.changeset("add-customers", SQL);
    assert_eq!(id, "0001-add-customers");
    let yaml = t.read("changesets/0001-add-customers/changeset.yaml");
    assert!(
        yaml.contains("id: 0001-add-customers") && yaml.contains("transaction: per-changeset"),
        "{yaml}"
    );

    let sealed = t.promoter(&["seal"]).ok();
    assert!(sealed.contains("sealed    0001-add-customers"), "{sealed}");
    let bundle = t.path("changesets/0001-add-customers");
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );

    // A developer key made by gpg: signs through promoter --gpg and with plain gpg.
    let dev = t.gpg_key("Dev One <dev1@example.com>", &[]);
    t.trust_gpg_key(&dev, "keys/developers");
    let signed = t.promoter(&["sign", &id, "--gpg", &dev]).ok();
    assert!(signed.contains(&format!("as developer {dev}")), "{signed}");
    assert_eq!(
        names(&bundle.join("signatures")),
        [format!("developer-{dev}.asc")]
    );

    let dev2 = t.gpg_key("Dev Two <dev2@example.com>", &[]);
    t.trust_gpg_key(&dev2, "keys/developers");
    t.gpg(&[
        "--local-user",
        &dev2,
        "--armor",
        "--detach-sign",
        "--output",
        "changesets/0001-add-customers/signatures/plain-gpg.asc",
        "changesets/0001-add-customers/SHA256SUMS",
    ])
    .ok();

    let qat = t.promoter(&["verify", "--for", "qat"]).ok();
    assert!(
        qat.contains(&format!("good  signatures/plain-gpg.asc: developer {dev2}")),
        "{qat}"
    );
    assert!(qat.contains("meets qat's requirements"), "{qat}");

    let prd = t.promoter(&["verify", "--for", "prd"]).fails();
    assert!(prd.contains("missing customer approval"), "{prd}");
    assert!(prd.contains("needs 1 customer approval"), "{prd}");

    // A customer's signature over SHA256SUMS no longer opens PRD: customers
    // sign approval statements.
    let customer = t.gpg_key("Customer <buyer@example.com>", &[]);
    t.trust_gpg_key(&customer, "keys/customers");
    t.gpg(&[
        "--local-user",
        &customer,
        "--armor",
        "--detach-sign",
        "--output",
        &format!("changesets/0001-add-customers/signatures/customer-{customer}.asc"),
        "changesets/0001-add-customers/SHA256SUMS",
    ])
    .ok();
    let prd = t.promoter(&["verify", "--for", "prd"]).fails();
    assert!(prd.contains("needs 1 customer approval"), "{prd}");

    // An approval statement signed with plain gpg counts (offline, verify
    // checks the fields it can; promote also checks QAT's receipt).
    let in_a_week = 1_800_000_000;
    t.gpg_approval(&id, &customer, &["prd"], in_a_week);
    let prd = t.promoter(&["verify", "--for", "prd"]);
    assert_eq!(
        prd.code,
        1,
        "the customer's SHA256SUMS signature is still there: {}",
        prd.all()
    );
    std::fs::remove_file(t.path(&format!(
        "changesets/0001-add-customers/signatures/customer-{customer}.asc"
    )))
    .unwrap();
    let prd = t.promoter(&["verify", "--for", "prd"]).ok();
    assert!(
        prd.contains(&format!("good  signatures/approval-{customer}.txt: approval by customer {customer} (buyer@example.com)"))
            && prd.contains("opens prd until 2027-01-15T08:00:00Z"),
        "{prd}"
    );
    // For another environment, or expired, it does not count.
    t.gpg_approval(&id, &customer, &["prd2"], in_a_week);
    let other = t.promoter(&["verify", "--for", "prd"]).fails();
    assert!(other.contains("opens prd2 only"), "{other}");
    t.gpg_approval(&id, &customer, &["prd"], 1_000_000_000);
    let expired = t.promoter(&["verify", "--for", "prd"]).fails();
    assert!(
        expired.contains("expired at 2001-09-09T01:46:40Z"),
        "{expired}"
    );
    t.gpg_approval(&id, &customer, &["prd"], in_a_week);

    // GnuPG verifies promoter's own signatures (the notations are non-critical).
    let (_, dev3_secret) = t.promoter_key("Dev Three <dev3@example.com>", "keys/developers");
    t.promoter(&["sign", &id, "--key", dev3_secret.to_str().unwrap()])
        .ok();
    let dev3 = names(&bundle.join("signatures"))
        .into_iter()
        .find(|n| n.starts_with("developer-") && !n.contains(&dev))
        .unwrap();
    let cert = t.read(&format!(
        "keys/developers/{}",
        dev3.trim_start_matches("developer-")
    ));
    std::fs::write(t.dir.path().join("dev3.asc"), cert).unwrap();
    t.gpg(&["--import", t.dir.path().join("dev3.asc").to_str().unwrap()])
        .ok();
    let gpg = t.gpg(&[
        "--verify",
        &format!("changesets/0001-add-customers/signatures/{dev3}"),
        "changesets/0001-add-customers/SHA256SUMS",
    ]);
    assert_eq!(gpg.code, 0, "{}", gpg.all());
    assert!(gpg.stderr.contains("Good signature"), "{}", gpg.stderr);

    let json = t.promoter(&["--json", "verify", "--for", "prd"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["changesets"][0]["signers"]["developer"], 3);
    assert_eq!(v["changesets"][0]["signers"]["customer"], 1);
}

#[test]
fn approve_refuses_a_developer_key() {
    let (t, id, dev) = signed_project();
    let secret = t
        .dir
        .path()
        .join("secret-keys")
        .join(format!("{dev}.secret.asc"));
    let err = t
        .promoter(&["approve", &id, "--key", secret.to_str().unwrap()])
        .fails();
    assert!(
        err.contains(&format!(
            "certificate {dev} is in the developer keyring; approvals come from the people who test and accept"
        )),
        "{err}"
    );
}

#[test]
fn sign_refuses_a_key_in_no_keyring_and_a_modified_bundle() {
    let (t, id, _) = signed_project();
    let out = t.dir.path().join("stranger");
    let v: serde_json::Value = serde_json::from_str(
        &t.promoter(&[
            "--json",
            "keys",
            "generate",
            "--no-passphrase",
            "--name",
            "S <s@x>",
            "--out",
            out.to_str().unwrap(),
        ])
        .ok(),
    )
    .unwrap();
    let err = t
        .promoter(&["sign", &id, "--key", v["secret"].as_str().unwrap()])
        .fails();
    assert!(err.contains("is in no role keyring"), "{err}");

    t.write(
        &format!("changesets/{id}/001-add-customers.sql"),
        "DROP TABLE customers;\n",
    );
    let secret = t.dir.path().join("secret-keys");
    let key = std::fs::read_dir(&secret)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".secret.asc"))
        .unwrap();
    let err = t
        .promoter(&["sign", &id, "--key", key.to_str().unwrap()])
        .fails();
    assert!(
        err.contains("001-add-customers.sql: modified since sealed"),
        "{err}"
    );
}

#[test]
fn passphrase_protected_key_uses_promoter_passphrase() {
    let t = TestContext::new();
    let id = t.changeset("x", SQL);
    t.promoter(&["seal"]).ok();
    let out = t.dir.path().join("k");
    let generated = t
        .promoter_env(
            &[
                "--json",
                "keys",
                "generate",
                "--name",
                "P <p@x>",
                "--out",
                out.to_str().unwrap(),
            ],
            &[("PROMOTER_PASSPHRASE", "correct horse")],
        )
        .ok();
    let v: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let fpr = v["fingerprint"].as_str().unwrap();
    std::fs::copy(
        v["public"].as_str().unwrap(),
        t.path(&format!("keys/developers/{fpr}.asc")),
    )
    .unwrap();
    let secret = v["secret"].as_str().unwrap();
    let err = t.promoter(&["sign", &id, "--key", secret]).fails();
    assert!(err.contains("protected by a passphrase"), "{err}");
    let err = t
        .promoter_env(
            &["sign", &id, "--key", secret],
            &[("PROMOTER_PASSPHRASE", "wrong")],
        )
        .fails();
    assert!(err.contains("wrong passphrase"), "{err}");
    t.promoter_env(
        &["sign", &id, "--key", secret],
        &[("PROMOTER_PASSPHRASE", "correct horse")],
    )
    .ok();
}

/// Each case tampers with a signed bundle; verify must fail naming what is wrong.
#[test]
fn tamper_matrix_each_case_fails_naming_the_file_or_key() {
    type Tamper = fn(&TestContext, &str, &str);
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "byte flip in a script",
            |t, id, _| {
                let rel = format!("changesets/{id}/001-add-customers.sql");
                let mut bytes = std::fs::read(t.path(&rel)).unwrap();
                bytes[0] ^= 0x20;
                std::fs::write(t.path(&rel), bytes).unwrap();
            },
            "001-add-customers.sql: modified since sealed",
        ),
        (
            "extra file",
            |t, id, _| t.write(&format!("changesets/{id}/002-more.sql"), "SELECT 1;\n"),
            "002-more.sql: not listed in SHA256SUMS (extra file)",
        ),
        (
            "missing file",
            |t, id, _| {
                std::fs::remove_file(t.path(&format!("changesets/{id}/001-add-customers.sql")))
                    .unwrap()
            },
            "001-add-customers.sql: listed in SHA256SUMS but missing",
        ),
        (
            "renamed file",
            |t, id, _| {
                std::fs::rename(
                    t.path(&format!("changesets/{id}/001-add-customers.sql")),
                    t.path(&format!("changesets/{id}/009-add-customers.sql")),
                )
                .unwrap()
            },
            "001-add-customers.sql: renamed to 009-add-customers.sql",
        ),
        (
            "symlink",
            |t, id, _| {
                std::os::unix::fs::symlink(
                    "/etc/passwd",
                    t.path(&format!("changesets/{id}/002-link.sql")),
                )
                .unwrap()
            },
            "002-link.sql: symbolic links are not allowed",
        ),
        (
            "edited manifest",
            |t, id, _| {
                let rel = format!("changesets/{id}/SHA256SUMS");
                let text = t.read(&rel).replace("changeset.yaml", "changeset.yml");
                t.write(&rel, &text);
            },
            "BAD signature",
        ),
        (
            "unknown signer",
            |t, id, _| {
                let k = t.gpg_key("Stranger <s@example.com>", &[]);
                t.gpg(&[
                    "--local-user",
                    &k,
                    "--armor",
                    "--detach-sign",
                    "--output",
                    &format!("changesets/{id}/signatures/developer-{k}.asc"),
                    &format!("changesets/{id}/SHA256SUMS"),
                ])
                .ok();
            },
            "unknown signer",
        ),
        (
            "text-mode signature",
            |t, id, _| {
                let k = t.gpg_key("Texter <t@example.com>", &[]);
                t.trust_gpg_key(&k, "keys/developers");
                t.gpg(&[
                    "--textmode",
                    "--local-user",
                    &k,
                    "--armor",
                    "--detach-sign",
                    "--output",
                    &format!("changesets/{id}/signatures/t.asc"),
                    &format!("changesets/{id}/SHA256SUMS"),
                ])
                .ok();
            },
            "text-mode signature refused",
        ),
        (
            "garbage signature file",
            |t, id, _| t.write(&format!("changesets/{id}/signatures/junk.asc"), "hello\n"),
            "signatures/junk.asc",
        ),
        (
            "expired key",
            |t, id, _| {
                let k = t.gpg_key(
                    "Old <old@example.com>",
                    &["--faked-system-time", "20200101T000000!"],
                );
                let _ = k;
                let k = t.gpg_fingerprint("Old <old@example.com>");
                t.trust_gpg_key(&k, "keys/developers");
                t.gpg(&[
                    "--faked-system-time",
                    "20200102T000000!",
                    "--local-user",
                    &k,
                    "--armor",
                    "--detach-sign",
                    "--output",
                    &format!("changesets/{id}/signatures/old.asc"),
                    &format!("changesets/{id}/SHA256SUMS"),
                ])
                .ok();
            },
            "expired",
        ),
        (
            "revoked key",
            |t, id, _| {
                let k = t.gpg_key("Revoked <rev@example.com>", &[]);
                t.gpg(&[
                    "--local-user",
                    &k,
                    "--armor",
                    "--detach-sign",
                    "--output",
                    &format!("changesets/{id}/signatures/rev.asc"),
                    &format!("changesets/{id}/SHA256SUMS"),
                ])
                .ok();
                let rev = std::fs::read_to_string(
                    t.gnupg.join("openpgp-revocs.d").join(format!("{k}.rev")),
                )
                .unwrap();
                let rev = rev.replace(":-----BEGIN", "-----BEGIN");
                std::fs::write(t.dir.path().join("rev.asc"), rev).unwrap();
                t.gpg(&["--import", t.dir.path().join("rev.asc").to_str().unwrap()])
                    .ok();
                t.trust_gpg_key(&k, "keys/developers");
            },
            "revoked",
        ),
        (
            "signature moved from another changeset",
            |t, id, dev| {
                let other = t.changeset("other", "SELECT 2;\n");
                t.promoter(&["seal", &other]).ok();
                let key = t
                    .dir
                    .path()
                    .join("secret-keys")
                    .join(format!("{dev}.secret.asc"));
                t.promoter(&["sign", &other, "--key", key.to_str().unwrap()])
                    .ok();
                std::fs::copy(
                    t.path(&format!(
                        "changesets/{other}/signatures/developer-{dev}.asc"
                    )),
                    t.path(&format!("changesets/{id}/signatures/developer-moved.asc")),
                )
                .unwrap();
            },
            "made for changeset 0002-other, not 0001-add-customers",
        ),
        (
            "cert in both roles",
            |t, _, dev| {
                std::fs::copy(
                    t.path(&format!("keys/developers/{dev}.asc")),
                    t.path(&format!("keys/customers/{dev}.asc")),
                )
                .unwrap();
            },
            "is in two role keyrings",
        ),
    ];
    for (name, tamper, want) in cases {
        let (t, id, dev) = signed_project();
        t.promoter(&["verify"]).ok();
        tamper(&t, &id, &dev);
        let run = t.promoter(&["verify", &id]);
        let all = run.all();
        assert_ne!(run.code, 0, "{name}: verify passed\n{all}");
        assert!(all.contains(want), "{name}: wanted {want:?} in\n{all}");
    }
}

/// Thresholds count distinct certificates, never signatures or subkeys.
#[test]
fn copies_and_subkeys_count_once_and_roles_come_from_keyrings() {
    let t = TestContext::new();
    let id = t.changeset("x", SQL);
    t.promoter(&["seal"]).ok();
    t.write(
        "environments.yaml",
        &t.read("environments.yaml")
            .replace("require: { developer: 1 }", "require: { developer: 2 }"),
    );
    let k = t.gpg_key("Two Subkeys <two@example.com>", &[]);
    t.gpg(&["--quick-add-key", &k, "ed25519", "sign", "1y"])
        .ok();
    t.gpg(&["--quick-add-key", &k, "ed25519", "sign", "1y"])
        .ok();
    t.trust_gpg_key(&k, "keys/developers");
    let listing = t.gpg(&["--with-colons", "--list-keys", &k]).ok();
    let fprs: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("fpr:"))
        .filter_map(|l| l.split(':').nth(9))
        .collect();
    assert_eq!(fprs.len(), 3, "{listing}");
    std::fs::create_dir(t.path(&format!("changesets/{id}/signatures"))).unwrap();
    for (i, sub) in fprs[1..].iter().enumerate() {
        t.gpg(&[
            "--local-user",
            &format!("{sub}!"),
            "--armor",
            "--detach-sign",
            "--output",
            &format!("changesets/{id}/signatures/sub{i}.asc"),
            &format!("changesets/{id}/SHA256SUMS"),
        ])
        .ok();
    }
    std::fs::copy(
        t.path(&format!("changesets/{id}/signatures/sub0.asc")),
        t.path(&format!("changesets/{id}/signatures/copy.asc")),
    )
    .unwrap();
    let out = t.promoter(&["verify", "--for", "qat"]).fails();
    assert_eq!(out.matches("  good  ").count(), 3, "{out}");
    assert!(
        out.contains("needs 2 developer signatures from distinct people, has 1"),
        "{out}"
    );

    // A customer's signature in a file named like a developer's is still a
    // customer's, and a customer's signature over SHA256SUMS counts for nothing.
    let cust = t.gpg_key("C <c@example.com>", &[]);
    t.trust_gpg_key(&cust, "keys/customers");
    t.gpg(&[
        "--local-user",
        &cust,
        "--armor",
        "--detach-sign",
        "--output",
        &format!("changesets/{id}/signatures/developer-{cust}.asc"),
        &format!("changesets/{id}/SHA256SUMS"),
    ])
    .ok();
    let json = t.promoter(&["--json", "verify", "--for", "qat"]).fails();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["changesets"][0]["signers"]["developer"], 1);
    assert!(v["changesets"][0]["signers"]["customer"].is_null(), "{v}");
    let sig = v["changesets"][0]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["file"] == format!("developer-{cust}.asc"))
        .unwrap();
    assert_eq!(sig["role"], "customer");
}

#[test]
fn keys_list_reports_a_certificate_in_two_roles() {
    let (t, _, dev) = signed_project();
    let listed = t.promoter(&["keys", "list"]).ok();
    assert!(
        listed.contains(&dev) && listed.contains("developer"),
        "{listed}"
    );
    std::fs::copy(
        t.path(&format!("keys/developers/{dev}.asc")),
        t.path("keys/customers/same.asc"),
    )
    .unwrap();
    let err = t.promoter(&["keys", "list"]).fails();
    assert!(
        err.contains(&format!("certificate {dev} is in two role keyrings")),
        "{err}"
    );
    assert!(err.contains("separation of duties"), "{err}");
}

#[test]
fn seal_refuses_what_cannot_be_sealed_faithfully() {
    type Setup = fn(&TestContext, &str);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "symlink",
            |t, id| {
                std::os::unix::fs::symlink(
                    "001-x.sql",
                    t.path(&format!("changesets/{id}/002-y.sql")),
                )
                .unwrap()
            },
            "002-y.sql: symbolic links are not allowed",
        ),
        (
            "byte-order mark",
            |t, id| {
                std::fs::write(
                    t.path(&format!("changesets/{id}/002-bom.sql")),
                    b"\xEF\xBB\xBFSELECT 1;\n",
                )
                .unwrap()
            },
            "002-bom.sql: starts with a UTF-8 byte-order mark",
        ),
        (
            "upper-case name",
            |t, id| t.write(&format!("changesets/{id}/002-Upper.sql"), "SELECT 1;\n"),
            "002-Upper.sql: file names may only use",
        ),
        (
            "subdirectory",
            |t, id| t.write(&format!("changesets/{id}/data/x.csv"), "1\n"),
            "data: subdirectories are not allowed",
        ),
        (
            "id mismatch",
            |t, id| {
                t.write(
                    &format!("changesets/{id}/changeset.yaml"),
                    "id: 0009-other\n",
                )
            },
            "id `0009-other` does not match the directory name `0001-x`",
        ),
        (
            "unknown field",
            |t, id| {
                t.write(
                    &format!("changesets/{id}/changeset.yaml"),
                    "id: 0001-x\ntransactoin: none\n",
                )
            },
            "changeset.yaml: unknown field `transactoin`",
        ),
        (
            "duplicate number",
            |t, _| t.write("changesets/00001-dup/changeset.yaml", "id: 00001-dup\n"),
            "changeset number 1 is used twice",
        ),
        (
            "misnamed directory",
            |t, _| t.write("changesets/7-short/changeset.yaml", "id: 7-short\n"),
            "7-short is not a changeset directory",
        ),
        (
            "no scripts",
            |t, id| std::fs::remove_file(t.path(&format!("changesets/{id}/001-x.sql"))).unwrap(),
            "has no *.sql scripts",
        ),
        (
            "fifo",
            |t, id| {
                std::process::Command::new("mkfifo")
                    .arg(t.path(&format!("changesets/{id}/002-fifo.sql")))
                    .status()
                    .unwrap();
            },
            "002-fifo.sql: not a regular file",
        ),
    ];
    for (name, setup, want) in cases {
        let t = TestContext::new();
        let id = t.changeset("x", "SELECT 1;\n");
        setup(&t, &id);
        let err = t.promoter(&["seal"]).fails();
        assert!(err.contains(want), "{name}: wanted {want:?} in\n{err}");
        assert!(
            !t.path(&format!("changesets/{id}/SHA256SUMS")).exists(),
            "{name}: sealed anyway"
        );
    }
}

#[test]
fn new_refuses_an_invalid_slug_with_the_rule() {
    let t = TestContext::new();
    let err = t.promoter(&["new", "Add_Customers"]).fails();
    assert!(
        err.contains(
            "`Add_Customers` is not a valid slug: use lower-case letters, digits and single hyphens"
        ),
        "{err}"
    );
    t.changeset("a", "SELECT 1;\n");
    t.changeset("b", "SELECT 1;\n");
    assert_eq!(
        names(&t.path("changesets")),
        [".gitkeep", "0001-a", "0002-b"]
    );
    let out = t.promoter(&["new", "c", "--no-transaction"]).ok();
    assert!(out.contains("0003-c"), "{out}");
    assert!(
        t.read("changesets/0003-c/changeset.yaml")
            .contains("transaction: none")
    );
}

#[test]
fn resealing_a_signed_bundle_needs_force_which_names_the_removed_signatures() {
    let (t, id, dev) = signed_project();
    assert!(t.promoter(&["seal"]).ok().contains("unchanged"));
    t.write(
        &format!("changesets/{id}/001-add-customers.sql"),
        "CREATE TABLE c2 (id int);\r\n",
    );
    let err = t.promoter(&["seal"]).fails();
    assert!(
        err.contains(&format!(
            "resealing would invalidate changesets/{id}/signatures/developer-{dev}.asc"
        )),
        "{err}"
    );
    assert!(err.contains("seal --force"), "{err}");
    let run = t.promoter(&["seal", "--force"]);
    let all = run.all();
    assert_eq!(run.code, 0, "{all}");
    assert!(
        all.contains("resealed")
            && all.contains(&format!(
                "removed stale signature changesets/{id}/signatures/developer-{dev}.asc"
            )),
        "{all}"
    );
    assert!(all.contains("has CRLF line endings"), "{all}");
    assert!(names(&t.path(&format!("changesets/{id}/signatures"))).is_empty());
}

#[test]
fn init_never_overwrites() {
    let t = TestContext::new();
    t.write("environments.yaml", "# mine\n");
    let out = t.promoter(&["init"]).ok();
    assert!(out.contains("kept     environments.yaml"), "{out}");
    assert_eq!(t.read("environments.yaml"), "# mine\n");
}

#[test]
fn config_errors_name_file_line_and_column() {
    let t = TestContext::new();
    t.write(
        "environments.yaml",
        "environments:\n  dev:\n    database_url: x\n    colour: red\n",
    );
    let err = t.promoter(&["verify", "--for", "dev"]).fails();
    assert!(
        err.contains("environments.yaml")
            && err.contains("unknown field `colour`")
            && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn seal_refuses_meta_commands_and_non_transactional_statements_naming_file_and_line() {
    let t = TestContext::new();
    let id = t.changeset("chinook", "DROP DATABASE IF EXISTS chinook;\n");
    let err = t.promoter(&["seal"]).fails();
    assert!(
        err.contains(&format!(
            "changesets/{id}/001-chinook.sql:1: DROP DATABASE cannot run inside a transaction block"
        )),
        "{err}"
    );
    assert!(err.contains("transaction: none"), "{err}");

    let verbatim =
        std::fs::read(crate::corpus::corpora().join("chinook/Chinook_PostgreSql.sql")).unwrap();
    let line = verbatim
        .split(|&b| b == b'\n')
        .position(|l| l.starts_with(b"\\c"))
        .unwrap()
        + 1;
    std::fs::write(
        t.path(&format!("changesets/{id}/001-chinook.sql")),
        &verbatim,
    )
    .unwrap();
    t.write(
        &format!("changesets/{id}/changeset.yaml"),
        &format!("id: {id}\ntransaction: none\n"),
    );
    let err = t.promoter(&["seal"]).fails();
    assert!(err.contains(&format!("changesets/{id}/001-chinook.sql:{line}: psql meta-command \\c is not supported in a changeset")), "{err}");
    assert!(!t.path(&format!("changesets/{id}/SHA256SUMS")).exists());

    let ext = crate::corpus::pg_sharedir().join("extension/pg_trgm--1.3.sql");
    std::fs::copy(&ext, t.path(&format!("changesets/{id}/001-chinook.sql"))).unwrap();
    let err = t.promoter(&["seal"]).fails();
    assert!(
        err.contains("psql meta-command \\echo is not supported"),
        "{err}"
    );

    t.write(
        &format!("changesets/{id}/001-chinook.sql"),
        "CREATE INDEX CONCURRENTLY i ON t (a);\n",
    );
    t.promoter(&["seal"]).ok();
}

/// Regression: verify once skipped the script checks, so a bundle sealed
/// outside promoter with a psql meta-command passed verification.
#[test]
fn verify_reports_meta_commands_in_a_bundle_sealed_outside_promoter() {
    let t = TestContext::new();
    let id = t.changeset("sneaky", "CREATE TABLE a (id int);\n\\c other_database\n");
    t.seal_with_sha256sum(&id);
    let err = t.promoter(&["verify"]).fails();
    assert!(err.contains("ok    files match SHA256SUMS"), "{err}");
    assert!(
        err.contains(&format!(
            "FAIL  changesets/{id}/001-sneaky.sql:2: psql meta-command \\c is not supported"
        )),
        "{err}"
    );
}

#[test]
fn keys_list_shows_expired_and_revoked_certificates() {
    let t = TestContext::new();
    t.gpg_key(
        "Old <old@example.com>",
        &["--faked-system-time", "20200101T000000!"],
    );
    let old = t.gpg_fingerprint("Old <old@example.com>");
    t.trust_gpg_key(&old, "keys/developers");
    let revoked = t.gpg_key("Revoked <rev@example.com>", &[]);
    let rev = std::fs::read_to_string(
        t.gnupg
            .join("openpgp-revocs.d")
            .join(format!("{revoked}.rev")),
    )
    .unwrap();
    std::fs::write(
        t.dir.path().join("rev.asc"),
        rev.replace(":-----BEGIN", "-----BEGIN"),
    )
    .unwrap();
    t.gpg(&["--import", t.dir.path().join("rev.asc").to_str().unwrap()])
        .ok();
    t.trust_gpg_key(&revoked, "keys/customers");
    let (fine, _) = t.promoter_key("Fine <fine@example.com>", "keys/developers");

    let v: serde_json::Value =
        serde_json::from_str(&t.promoter(&["--json", "keys", "list"]).ok()).unwrap();
    let cert = |fpr: &str| {
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["fingerprint"] == fpr)
            .unwrap()
            .clone()
    };
    let (old, revoked, fine) = (cert(&old), cert(&revoked), cert(&fine));
    assert_eq!(old["usable"], false);
    assert!(
        old["problem"].as_str().unwrap().starts_with("expired"),
        "{old}"
    );
    assert!(
        old["expires"].as_str().unwrap().starts_with("2020-12-31"),
        "one year after its creation: {old}"
    );
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["role"], "customer");
    assert_eq!(revoked["problem"], "revoked");
    assert_eq!(fine["usable"], true);
    assert_eq!(fine["userids"][0], "Fine <fine@example.com>");
    let table = t.promoter(&["keys", "list"]).ok();
    assert!(
        table.contains("revoked") && table.contains("expired"),
        "{table}"
    );
}

#[test]
fn a_failed_gpg_signature_names_the_changeset_and_key() {
    let t = TestContext::new();
    let id = t.changeset("x", "SELECT 1;\n");
    t.promoter(&["seal"]).ok();
    // gpg knows only the public half of this key.
    let (fpr, _) = t.promoter_key("Public Only <p@example.com>", "keys/developers");
    t.gpg(&[
        "--import",
        t.path(&format!("keys/developers/{fpr}.asc"))
            .to_str()
            .unwrap(),
    ])
    .ok();
    let err = t.promoter(&["sign", &id, "--gpg", &fpr]).fails();
    assert!(
        err.contains(&format!(
            "signing changesets/{id}/SHA256SUMS as developer {fpr}"
        )),
        "{err}"
    );
    assert!(err.contains("gpg: signing with"), "{err}");
    assert!(!t.path(&format!("changesets/{id}/signatures")).exists());
}

/// Regression: a damaged signature packet was reported as "contains a
/// Signature Packet packet", as if the file held the wrong kind of packet.
#[test]
fn a_damaged_signature_is_reported_as_damaged() {
    let (t, id, dev) = signed_project();
    let path = t.path(&format!("changesets/{id}/signatures/developer-{dev}.asc"));
    let out = std::process::Command::new("gpg")
        .args(["--dearmor", "--output", "-", path.to_str().unwrap()])
        .output()
        .unwrap();
    let mut bytes = out.stdout;
    // Find the version byte after the packet header, and make it one no
    // OpenPGP version has.
    let header = if bytes[0] & 0x40 != 0 {
        if bytes[1] < 192 { 2 } else { 3 }
    } else {
        1 + [1, 2, 4][usize::from(bytes[0] & 3)]
    };
    assert!(
        (4..=6).contains(&bytes[header]),
        "version byte {}",
        bytes[header]
    );
    bytes[header] = 9;
    std::fs::write(&path, bytes).unwrap();
    let out = t.promoter(&["verify"]).fails();
    assert!(out.contains("damaged signature"), "{out}");
    assert!(!out.contains("Signature Packet packet"), "{out}");
}

/// Regression: a keyring directory committed as a symlink showed libgit2's
/// "the requested type does not match the type in the ODB".
#[test]
fn a_keyring_committed_as_a_symlink_is_named() {
    let (t, _, _) = signed_project();
    std::fs::remove_dir_all(t.path("keys/customers")).unwrap();
    std::os::unix::fs::symlink("developers", t.path("keys/customers")).unwrap();
    t.commit_all("customers are developers now");
    let run = t.promoter(&["promote", "qat", "prd", "--dry-run"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains("keys/customers: is a symbolic link in git"),
        "{}",
        run.stderr
    );
}

/// Regression: a 6 GB signature file was read whole, and a changeset.yaml
/// of nested `[` took minutes to parse.
#[test]
fn oversized_files_and_deeply_nested_yaml_are_refused_at_once() {
    let (t, id, _) = signed_project();
    let huge = t.path(&format!("changesets/{id}/signatures/huge.asc"));
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(6_000_000_000)
        .unwrap();
    let start = std::time::Instant::now();
    let out = t.promoter(&["verify"]).fails();
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        out.contains(&format!("changesets/{id}/signatures/huge.asc: 6000000000 bytes, more than the 65536 bytes allowed")),
        "{out}"
    );
    std::fs::remove_file(&huge).unwrap();
    t.write(
        &format!("changesets/{id}/changeset.yaml"),
        &format!("id: {id}\ndescription: {}\n", "[".repeat(400_000)),
    );
    let start = std::time::Instant::now();
    let out = t.promoter(&["seal", "--force"]).fails();
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert!(out.contains("changeset.yaml: 400"), "{out}");
    t.write(
        &format!("changesets/{id}/changeset.yaml"),
        &format!("id: {id}\ndescription: {}x\n", "[".repeat(40)),
    );
    let out = t.promoter(&["seal", "--force"]).fails();
    assert!(out.contains("nests deeper than 32 levels"), "{out}");
    t.write("environments.yaml", &format!("{}\n", "{".repeat(50)));
    let out = t.promoter(&["status"]).fails();
    assert!(
        out.contains("environments.yaml: nests deeper than 32 levels"),
        "{out}"
    );
}

#[test]
fn keys_generate_never_writes_an_unprotected_secret_key_unasked_nor_inside_the_repository() {
    let t = TestContext::new();
    let out = t.dir.path().join("keys-out");
    let args = [
        "keys",
        "generate",
        "--name",
        "Ada <ada@example.com>",
        "--out",
    ];
    // No terminal, no PROMOTER_PASSPHRASE: refused, nothing written.
    let mut plain = args.to_vec();
    plain.push(out.to_str().unwrap());
    let run = t.promoter(&plain);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.all()
            .contains("refusing to write an unprotected secret key"),
        "{}",
        run.all()
    );
    assert!(run.all().contains("--no-passphrase"), "{}", run.all());
    assert!(!out.exists(), "nothing may be written");
    // Inside the project (and so inside its repository): refused, whatever the passphrase.
    t.commit_all("init");
    for inside in ["my-keys", "keys/developers", "./changesets/../secret"] {
        let mut a = args.to_vec();
        a.extend([inside, "--no-passphrase"]);
        let run = t.promoter(&a);
        assert_eq!(run.code, 3, "{inside}: {}", run.all());
        assert!(
            run.all().contains("is inside the repository"),
            "{inside}: {}",
            run.all()
        );
    }
    assert!(crate::common::names(&t.path("keys/developers")) == [".gitkeep"]);
    // With a passphrase from the environment the key is written, encrypted.
    let mut a = args.to_vec();
    a.push(out.to_str().unwrap());
    let done = t
        .promoter_env(&a, &[("PROMOTER_PASSPHRASE", "correct horse")])
        .ok();
    assert!(done.contains("protected by its passphrase"), "{done}");
}

#[test]
fn init_keeps_secret_keys_out_of_git_and_keys_list_says_what_a_revocation_certificate_is() {
    let t = TestContext::new();
    let ignore = t.read(".gitignore");
    assert!(ignore.lines().any(|l| l == "*.secret.asc"), "{ignore}");
    assert!(ignore.lines().any(|l| l == "*.rev.asc"), "{ignore}");
    t.commit_all("init");
    t.write("keys/developers/ABC.secret.asc", "x");
    let ignored = t.git(&["check-ignore", "keys/developers/ABC.secret.asc"]);
    assert_eq!(
        ignored.code,
        0,
        "git must ignore secret keys: {}",
        ignored.all()
    );
    std::fs::remove_file(t.path("keys/developers/ABC.secret.asc")).unwrap();
    // A developer copies the whole output directory into keys/developers/.
    let (fpr, secret) = t.promoter_key("Dev <dev@example.com>", "keys/developers");
    let rev = secret.with_file_name(format!("{fpr}.rev.asc"));
    std::fs::copy(&rev, t.path(&format!("keys/developers/{fpr}.rev.asc"))).unwrap();
    let run = t.promoter(&["keys", "list"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains(&fpr), "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "keys/developers/{fpr}.rev.asc is a revocation certificate"
        )),
        "{}",
        run.all()
    );
    // A secret key copied in is refused by name.
    std::fs::copy(&secret, t.path("keys/developers/oops.asc")).unwrap();
    let err = t.promoter(&["keys", "list"]).fails();
    assert!(err.contains("oops.asc"), "{err}");
}

#[test]
fn commands_find_the_project_from_a_subdirectory_and_a_stray_readme_is_only_noted() {
    let t = TestContext::new();
    let id = t.changeset("customers", SQL);
    t.write("changesets/README.md", "# our changesets\n");
    let run = t.promoter(&["seal"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains("changesets/README.md is not a changeset"),
        "{}",
        run.all()
    );
    // From inside a changeset directory, as from the project root.
    let sub = t.path(&format!("changesets/{id}"));
    let out = t.cmd().current_dir(&sub).args(["verify"]).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains(&id), "{all}");
    assert!(!all.contains("not found"), "{all}");
    // Outside any project the error says where it looked.
    let out = t
        .cmd()
        .current_dir(t.dir.path())
        .args(["status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("or any directory above it"), "{err}");
    // A directory with a bad name is still an error: it may be a mistyped changeset.
    std::fs::create_dir(t.path("changesets/add-orders")).unwrap();
    let err = t.promoter(&["seal"]).fails();
    assert!(err.contains("add-orders"), "{err}");
}

#[test]
fn completions_load_in_bash_and_man_pages_render_with_man() {
    let t = TestContext::new();
    let script = t.promoter(&["completions", "bash"]).ok();
    let file = t.dir.path().join("promoter.bash");
    std::fs::write(&file, &script).unwrap();
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("source {} && complete -p promoter", file.display()),
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("promoter"),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["zsh", "fish"] {
        assert!(
            !t.promoter(&["completions", shell]).ok().is_empty(),
            "{shell}"
        );
    }
    let dir = t.dir.path().join("man");
    t.promoter(&["man", "--out", dir.to_str().unwrap()]).ok();
    let pages = crate::common::names(&dir);
    for page in [
        "promoter.1",
        "promoter-clone.1",
        "promoter-keys-generate.1",
        "promoter-trust-pin.1",
    ] {
        assert!(pages.contains(&page.to_owned()), "{page} in {pages:?}");
    }
    let man = std::process::Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(dir.join("promoter-clone.1"))
        .env("MANWIDTH", "100")
        .output();
    match man {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("promoter-clone") && text.contains("--mask"),
                "{text}"
            );
        }
        // No man on this machine: the page must at least be roff.
        Err(_) => {
            let roff = std::fs::read_to_string(dir.join("promoter-clone.1")).unwrap();
            assert!(roff.starts_with(".ie") || roff.contains(".TH"), "{roff}");
        }
    }
}

/// changeset.yaml is refused by its size, before it is read, naming it.
#[test]
fn an_oversized_changeset_yaml_is_refused_naming_the_file() {
    let t = TestContext::new();
    let id = t.changeset("big", "SELECT 1;\n");
    let description = "x".repeat(100 * 1024);
    let yaml = format!("id: {id}\ndescription: {description}\ntransaction: per-changeset\n");
    t.write(&format!("changesets/{id}/changeset.yaml"), &yaml);
    let err = t.promoter(&["seal"]).fails();
    assert!(
        err.contains(&format!(
            "changesets/{id}/changeset.yaml: {} bytes, more than the 65536 bytes allowed",
            yaml.len()
        )),
        "{err}"
    );
}
