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
        text.to_owned()
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
];

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
fn keywords_to_url(text: &str) -> Result<String, String> {
    // Every keyword travels as a query parameter (sqlx reads `host`, `port`,
    // `dbname`, `user` and `password` there too), so socket directories, IP
    // addresses and odd names need no URL escaping rules of their own.
    let mut url = url::Url::parse("postgres://").map_err(|e| e.to_string())?;
    url.query_pairs_mut().extend_pairs(keywords(text)?);
    Ok(url.to_string())
}

/// The connection string for a libpq client tool (`pg_dump`,
/// `pg_restore`), as a URL without its password, which is returned apart
/// so that it travels in `PGPASSWORD`, never on a command line that `ps`
/// shows; with `dbname` the database is replaced.
pub fn for_tool(text: &str, dbname: Option<&str>) -> Result<(String, Option<String>), String> {
    let url = if is_url(text) {
        text.to_owned()
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
