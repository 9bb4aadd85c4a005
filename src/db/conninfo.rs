//! Connection strings as libpq reads them: `postgres://` URLs and
//! `key=value` strings (`host=db dbname=shop sslmode=verify-full`), turned
//! into sqlx options; and their redacted form, the only form ever shown.
//!
//! A key/value string is rewritten as the equivalent URL so that one parser
//! (sqlx's) handles both, including `PGPASSFILE` and the `PGSSL*` variables.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// What is shown in place of a secret.
const HIDDEN: &str = "***";

/// Parses a connection string (URL or key/value) into connect options.
/// Over a unix socket TLS is off whatever `sslmode` says, as in libpq.
pub fn parse(text: &str) -> Result<PgConnectOptions, String> {
    let url = if is_url(text) {
        url_with_service(text)?
    } else {
        keywords_to_url(text)?
    };
    let options = PgConnectOptions::from_str(&url).map_err(|e| {
        // sqlx may quote the string it was given; never let a secret through.
        e.to_string().replace(&url, &redact(&url))
    })?;
    let over_socket = options.get_socket().is_some() || options.get_host().starts_with('/');
    Ok(if over_socket {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The keywords libpq accepts that promoter passes on; anything else is an
/// error, as libpq's "invalid connection option".
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "service",
];

/// The parameters of service `name` in libpq's service files: the user's
/// (`$PGSERVICEFILE`, else `~/.pg_service.conf`), then the system's
/// (`$PGSYSCONFDIR/pg_service.conf`, else Debian's
/// `/etc/postgresql-common/pg_service.conf`); the first file that has the
/// service decides, as in libpq.
fn service(name: &str) -> Result<Vec<(String, String)>, String> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let user = std::env::var_os("PGSERVICEFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let system = std::env::var_os("PGSYSCONFDIR")
        .map_or_else(
            || std::path::PathBuf::from("/etc/postgresql-common"),
            std::path::PathBuf::from,
        )
        .join("pg_service.conf");
    let mut looked = Vec::new();
    for file in user.into_iter().chain([system]) {
        looked.push(file.display().to_string());
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(params) = service_in(&text, name, &file.display().to_string())? {
            return Ok(params);
        }
    }
    Err(format!(
        "definition of service \"{name}\" not found (looked in {})",
        looked.join(", ")
    ))
}

/// Service `name`'s parameters in the text of a service file, if it is there.
fn service_in(text: &str, name: &str, file: &str) -> Result<Option<Vec<(String, String)>>, String> {
    let mut current: Option<&str> = None;
    let mut found: Option<Vec<(String, String)>> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if found.is_some() {
                break;
            }
            current = Some(section.trim());
            if current == Some(name) {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(params) = found.as_mut().filter(|_| current == Some(name)) else {
            continue;
        };
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{file}:{}: syntax error in service file", i + 1))?;
        let (k, v) = (k.trim(), v.trim());
        if k == "service" || !KEYWORDS.contains(&k) {
            return Err(format!(
                "{file}:{}: invalid connection option \"{k}\"",
                i + 1
            ));
        }
        params.push((k.to_owned(), v.to_owned()));
    }
    Ok(found)
}

/// A URL whose `service` query parameter is replaced by that service's
/// parameters (those the URL does not set itself).
fn url_with_service(text: &str) -> Result<String, String> {
    let Ok(mut url) = url::Url::parse(text) else {
        return Ok(text.to_owned());
    };
    let Some(name) = url
        .query_pairs()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.into_owned())
    else {
        return Ok(text.to_owned());
    };
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "service")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let set_in_url = |k: &str, url: &url::Url| match k {
        "host" | "hostaddr" => url.host_str().is_some_and(|h| !h.is_empty()),
        "port" => url.port().is_some(),
        "user" => !url.username().is_empty(),
        "password" => url.password().is_some(),
        "dbname" => url.path().len() > 1,
        _ => false,
    };
    for (k, v) in service(&name)? {
        if !pairs.iter().any(|(p, _)| *p == k) && !set_in_url(&k, &url) {
            pairs.push((k, v));
        }
    }
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    Ok(url.to_string())
}

/// Splits `key=value key='quoted \' value'` the way libpq's conninfo parser does.
fn keywords(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after \"{key}\" in connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string in connection string".into()),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !KEYWORDS.contains(&key.as_str()) {
            return Err(format!("invalid connection option \"{key}\""));
        }
        out.push((key, value));
    }
}

/// The URL equivalent to a key/value connection string.
// Every keyword travels as a query parameter (sqlx reads `host`, `port`,
// `dbname`, `user` and `password` there too), so socket directories, IP
// addresses and odd names need no URL escaping rules of their own.
fn keywords_to_url(text: &str) -> Result<String, String> {
    let mut pairs = keywords(text)?;
    // `service=name`: the service file's parameters, under explicit ones.
    if let Some(i) = pairs.iter().position(|(k, _)| k == "service") {
        let (_, name) = pairs.remove(i);
        for (k, v) in service(&name)? {
            if !pairs.iter().any(|(p, _)| *p == k) {
                pairs.push((k, v));
            }
        }
    }
    let mut url = url::Url::parse("postgres://").map_err(|e| e.to_string())?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url.to_string())
}

/// The connection string for a libpq client tool (`pg_dump`,
/// `pg_restore`), as a URL without its password, which is returned apart
/// so that it travels in `PGPASSWORD`, never on a command line that `ps`
/// shows; with `dbname` the database is replaced.
pub fn for_tool(text: &str, dbname: Option<&str>) -> Result<(String, Option<String>), String> {
    let url = if is_url(text) {
        url_with_service(text)?
    } else {
        keywords_to_url(text)?
    };
    let mut url = url::Url::parse(&url)
        .map_err(|_| format!("not a valid connection URL: {}", redact(text)))?;
    let mut password = url.password().map(|p| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map_or_else(String::new, |(_, v)| v.into_owned())
    });
    let _ = url.set_password(None);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "password" => password = Some(v.into_owned()),
            "dbname" if dbname.is_some() => {}
            _ => pairs.push((k.into_owned(), v.into_owned())),
        }
    }
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(&pairs);
    }
    if let Some(db) = dbname {
        let encoded: String = url::form_urlencoded::byte_serialize(db.as_bytes()).collect();
        url.set_path(&format!("/{}", encoded.replace('+', "%20")));
    }
    Ok((url.to_string(), password))
}

/// The same connection with database `dbname` instead, as a URL that keeps
/// its password (for a branch: the server and credentials of the
/// connection it is made next to).
pub fn with_dbname(text: &str, dbname: &str) -> Result<String, String> {
    let (url, password) = for_tool(text, Some(dbname))?;
    let Some(password) = password else {
        return Ok(url);
    };
    let mut url = url::Url::parse(&url)
        .map_err(|_| format!("not a valid connection URL: {}", redact(text)))?;
    let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    url.set_password(Some(&encoded.replace('+', "%20")))
        .map_err(|()| format!("{}: cannot carry a password", redact(text)))?;
    Ok(url.to_string())
}

/// The database a connection string names, if it names one.
pub fn dbname(text: &str) -> Result<Option<String>, String> {
    let (url, _) = for_tool(text, None)?;
    let url = url::Url::parse(&url)
        .map_err(|_| format!("not a valid connection URL: {}", redact(text)))?;
    let path = url.path().trim_start_matches('/');
    if path.is_empty() {
        return Ok(url
            .query_pairs()
            .find(|(k, _)| k == "dbname")
            .map(|(_, v)| v.into_owned()));
    }
    Ok(Some(
        url::form_urlencoded::parse(format!("d={path}").as_bytes())
            .next()
            .map_or_else(|| path.to_owned(), |(_, v)| v.into_owned()),
    ))
}

/// A connection string with every secret replaced by `***`: the password of
/// a URL's user info, a `password` query parameter, a `password=` keyword.
/// A string that cannot be parsed is never echoed.
pub fn redact(text: &str) -> String {
    if is_url(text) {
        let Ok(mut url) = url::Url::parse(text) else {
            return "(a connection string that is not a valid URL)".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some(HIDDEN));
        }
        if url.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        HIDDEN.into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(&pairs);
        }
        // `***` in user info stays readable; the url crate would not encode it.
        return url.to_string().replace("%2A%2A%2A", HIDDEN);
    }
    match keywords(text) {
        Ok(pairs) => pairs
            .iter()
            .map(|(k, v)| {
                let v = if k == "password" { HIDDEN } else { v.as_str() };
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '\'') {
                    format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "(a connection string that cannot be parsed)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_every_form() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
            // `/`, `?` and `@` inside a percent-encoded password.
            ("postgres://u:a%2Fb%3Fc%40d@h/db", "postgres://u:***@h/db"),
            (
                "host=db dbname=shop password=s3cr3t sslmode=verify-full",
                "host=db dbname=shop password=*** sslmode=verify-full",
            ),
            ("password='a b\\' c' user=x", "password=*** user=x"),
            (
                "postgres://u:pw@[not a url",
                "(a connection string that is not a valid URL)",
            ),
            (
                "host=db password='unterminated",
                "(a connection string that cannot be parsed)",
            ),
        ];
        for (text, want) in cases {
            let shown = redact(text);
            assert_eq!(shown, want, "{text}");
            for secret in ["secret", "s3cr3t", "a b", "a%2Fb", "pw@"] {
                assert!(!shown.contains(secret), "{text} → {shown}");
            }
        }
    }

    #[test]
    fn client_tools_get_the_password_apart_and_the_database_they_are_told() {
        let cases = [
            (
                "postgres://u:p%40ss@h:5432/shop?sslmode=require",
                None,
                "postgres://u@h:5432/shop?sslmode=require",
                Some("p@ss"),
            ),
            (
                "postgres://u@h/shop?password=s3cr3t&host=/run/pg",
                Some("shop__promoter_clone"),
                "postgres://u@h/shop__promoter_clone?host=%2Frun%2Fpg",
                Some("s3cr3t"),
            ),
            (
                "host=/tmp/sock dbname=shop user=ops password='a b'",
                Some("my db"),
                "postgres:///my%20db?host=%2Ftmp%2Fsock&user=ops",
                Some("a b"),
            ),
            ("postgres://h/db", None, "postgres://h/db", None),
        ];
        for (text, db, want, password) in cases {
            let (url, pw) = for_tool(text, db).unwrap();
            assert_eq!(url, want, "{text}");
            assert_eq!(pw.as_deref(), password, "{text}");
            parse(&url).unwrap();
        }
    }

    #[test]
    fn service_files_are_read_as_libpq_reads_them() {
        let text = "# shared\n[other]\nhost=elsewhere\n\n[shop]\nhost=/run/pg\nport = 5433\ndbname=shop\n[later]\nuser=x\n";
        assert_eq!(
            service_in(text, "shop", "f").unwrap().unwrap(),
            [
                ("host".to_owned(), "/run/pg".to_owned()),
                ("port".to_owned(), "5433".to_owned()),
                ("dbname".to_owned(), "shop".to_owned())
            ]
        );
        assert_eq!(service_in(text, "nope", "f").unwrap(), None);
        let err = service_in("[shop]\ncolour=red\n", "shop", "f").unwrap_err();
        assert_eq!(err, "f:2: invalid connection option \"colour\"");
        let err = service_in("[shop]\nhost\n", "shop", "f").unwrap_err();
        assert!(err.contains("f:2: syntax error"), "{err}");
    }

    #[test]
    fn keyword_strings_parse_like_libpq() {
        let o = parse("host=/tmp/sock port=5433 dbname='my db' user=ops sslmode=require").unwrap();
        assert_eq!(
            o.get_socket().map(|p| p.to_str().unwrap()),
            Some("/tmp/sock")
        );
        assert_eq!(o.get_port(), 5433);
        assert_eq!(o.get_database(), Some("my db"));
        assert_eq!(o.get_username(), "ops");
        // Over a unix socket libpq ignores sslmode; so does promoter.
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Disable));
        let o = parse("host=db.example port=5432 dbname=shop sslmode=verify-full").unwrap();
        assert_eq!(o.get_host(), "db.example");
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
        for (bad, want) in [
            ("host=db colour=red", "invalid connection option \"colour\""),
            ("host", "missing \"=\" after \"host\""),
            ("password='x", "unterminated"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(want), "{bad} → {err}");
        }
    }

    #[test]
    fn urls_over_a_socket_turn_tls_off_and_tcp_keeps_it() {
        let o = parse("postgres://u@localhost/db?host=/run/pg&sslmode=require").unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Disable));
        let o = parse("postgres://u@127.0.0.1:5432/db?sslmode=verify-ca").unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyCa));
    }
}
