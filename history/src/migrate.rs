//! Versioned migrations, one list per backend, each step a SQL file embedded in the binary.
//!
//! A backend records what it applied in `schema_migrations (version, name, applied_ms)` and
//! applies the steps after its highest version, each in one transaction with its record, in
//! order. A database newer than the build is refused rather than written in a shape this
//! build does not know.

/// One step: `migrations/<backend>/NNNN_name.sql`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "candles",
        sql: include_str!("../migrations/sqlite/0001_candles.sql"),
    },
    Migration {
        version: 2,
        name: "backfills",
        sql: include_str!("../migrations/sqlite/0002_backfills.sql"),
    },
    Migration {
        version: 3,
        name: "rollup",
        sql: include_str!("../migrations/sqlite/0003_rollup.sql"),
    },
    Migration {
        version: 4,
        name: "minutes",
        sql: include_str!("../migrations/sqlite/0004_minutes.sql"),
    },
    Migration {
        version: 5,
        name: "metrics_accounts",
        sql: include_str!("../migrations/sqlite/0005_metrics_accounts.sql"),
    },
    Migration {
        version: 6,
        name: "alerts",
        sql: include_str!("../migrations/sqlite/0006_alerts.sql"),
    },
];

pub(crate) const POSTGRESQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "candles",
        sql: include_str!("../migrations/postgresql/0001_candles.sql"),
    },
    Migration {
        version: 2,
        name: "backfills",
        sql: include_str!("../migrations/postgresql/0002_backfills.sql"),
    },
    Migration {
        version: 3,
        name: "rollup",
        sql: include_str!("../migrations/postgresql/0003_rollup.sql"),
    },
    Migration {
        version: 4,
        name: "minutes",
        sql: include_str!("../migrations/postgresql/0004_minutes.sql"),
    },
    Migration {
        version: 5,
        name: "metrics_accounts",
        sql: include_str!("../migrations/postgresql/0005_metrics_accounts.sql"),
    },
    Migration {
        version: 6,
        name: "alerts",
        sql: include_str!("../migrations/postgresql/0006_alerts.sql"),
    },
];

/// The highest version a list knows.
pub(crate) fn latest(list: &[Migration]) -> i64 {
    list.last().map_or(0, |m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_by_one_and_both_backends_know_the_same_steps() {
        for list in [SQLITE, POSTGRESQL] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
        let names = |l: &[Migration]| l.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRESQL));
    }
}
