//! `TOPCOINS_DATABASE_URL`: which backend, and where.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// `sqlite://PATH` (`sqlite:///var/lib/topcoins/history.db` is absolute, `sqlite://history.db`
/// relative to the working directory) or `postgres://…` / `postgresql://…` (libpq's URL
/// form). `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL, checked by tokio-postgres' parser.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn config(&self) -> tokio_postgres::Config {
        self.0.parse().expect("checked when the url was parsed")
    }
}

impl FromStr for DatabaseUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: redact(s),
            reason: reason.to_owned(),
        };
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(invalid(
                    "sqlite:// needs a file path, e.g. sqlite:///var/lib/topcoins/history.db",
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            s.parse::<tokio_postgres::Config>()
                .map_err(|e| invalid(&e.to_string()))?;
            return Ok(DatabaseUrl::Postgres(PostgresUrl(s.to_owned())));
        }
        Err(invalid(
            "expected sqlite://PATH, postgres://… or postgresql://…",
        ))
    }
}

/// The url with its password, in the user info or as a `password=` parameter, replaced by
/// `***`. Works on any input, parsable or not, since error messages quote what was given.
pub fn redact(url: &str) -> String {
    let url = redact_user_info(url);
    match url.find("password=") {
        Some(at) => {
            let value = at + "password=".len();
            let end = url[value..].find('&').map_or(url.len(), |e| value + e);
            format!("{}***{}", &url[..value], &url[end..])
        }
        None => url,
    }
}

fn redact_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &authority[..at];
    let Some(colon) = user_info.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &user_info[..colon],
        &rest[at..]
    )
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            "sqlite:///var/lib/h.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite("/var/lib/h.db".into())
        );
        assert_eq!(
            "sqlite://h.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite("h.db".into())
        );
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn postgres_urls_are_checked_and_never_show_the_password() {
        for s in [
            "postgres://u:s3cret@db:5432/topcoins",
            "postgresql://u:s3cret@db/topcoins?sslmode=disable",
        ] {
            let url: DatabaseUrl = s.parse().unwrap();
            assert!(matches!(url, DatabaseUrl::Postgres(_)));
            for shown in [url.to_string(), format!("{url:?}")] {
                assert!(!shown.contains("s3cret"), "{shown}");
                assert!(shown.contains("u:***@db"), "{shown}");
            }
        }
        let err = "postgres://u:s3cret@db:notaport/x"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn other_schemes_are_refused_clearly() {
        for s in ["mysql://u:p@h/db", "history.db", "", "sqlite:h.db"] {
            let err = s.parse::<DatabaseUrl>().unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{s}");
            assert!(err.to_string().contains("expected sqlite://PATH"), "{err}");
        }
    }

    #[test]
    fn redaction_leaves_urls_without_a_password_alone() {
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db?user=u"), "postgres://h/db?user=u");
        assert_eq!(redact("postgres://u:p@h:1/db"), "postgres://u:***@h:1/db");
        assert_eq!(
            redact("postgres://h/db?password=p&user=u"),
            "postgres://h/db?password=***&user=u"
        );
    }
}
