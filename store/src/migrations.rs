//! The versioned migrations, embedded from `schemas/sql` (SQLite) and `schemas/cql` (ScyllaDB).
//! Versions are applied in order and recorded in `schema_migrations`; a version is never edited
//! once released: changes are new versions.

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, ascending from 1.
    pub version: u32,
    /// Short name.
    pub name: &'static str,
    /// The statements (`;`-separated; `--` comments allowed).
    pub script: &'static str,
}

/// SQLite migrations.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        script: include_str!("../../schemas/sql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "api_keys",
        script: include_str!("../../schemas/sql/0002_api_keys.sql"),
    },
    Migration {
        version: 3,
        name: "users",
        script: include_str!("../../schemas/sql/0003_users.sql"),
    },
];

/// ScyllaDB (CQL) migrations.
pub const CQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        script: include_str!("../../schemas/cql/0001_init.cql"),
    },
    Migration {
        version: 2,
        name: "api_keys",
        script: include_str!("../../schemas/cql/0002_api_keys.cql"),
    },
    Migration {
        version: 3,
        name: "users",
        script: include_str!("../../schemas/cql/0003_users.cql"),
    },
];

/// Tables only the CQL backend has: the lookup tables that make `email` and `username` unique
/// there (SQLite has UNIQUE constraints instead).
pub const CQL_ONLY_TABLES: &[&str] = &["users_by_email", "users_by_username"];

/// The statements of a script: comments removed, split on `;`, blanks dropped.
pub fn statements(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_from_one_without_gaps() {
        for set in [SQLITE, CQL] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1, "{}", m.name);
            }
        }
    }

    #[test]
    fn statements_strip_comments_and_split() {
        let s = statements("-- a\nCREATE TABLE a (x int); -- b\n\n CREATE TABLE b (y int);\n");
        assert_eq!(s, vec!["CREATE TABLE a (x int)", "CREATE TABLE b (y int)"]);
    }

    #[test]
    fn both_backends_create_the_same_tables() {
        let tables = |set: &[Migration]| -> Vec<String> {
            let mut names: Vec<String> = set
                .iter()
                .flat_map(|m| statements(m.script))
                .filter_map(|s| {
                    let s = s.replace("IF NOT EXISTS ", "");
                    s.strip_prefix("CREATE TABLE ")
                        .map(|r| r.split_whitespace().next().unwrap().to_string())
                })
                .collect();
            names.sort();
            names
        };
        let cql: Vec<String> = tables(CQL)
            .into_iter()
            .filter(|t| !CQL_ONLY_TABLES.contains(&t.as_str()))
            .collect();
        assert_eq!(tables(SQLITE), cql);
        for t in CQL_ONLY_TABLES {
            assert!(
                tables(CQL).iter().any(|c| c == t),
                "{t} is created by a CQL migration"
            );
        }
    }
}
