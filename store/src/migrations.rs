//! The versioned migrations, embedded from `schemas/sql` (SQLite) and `schemas/cql` (ScyllaDB).
//! Versions are applied in order and recorded in `schema_migrations`; a version is never edited
//! once released: changes are new versions.

use crate::Error;

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

/// The two lists from one table, so that both backends have the same versions (a migration
/// one backend does not need is an empty file): `version "file" "name"` stands for
/// `schemas/sql/<file>.sql` and `schemas/cql/<file>.cql`.
macro_rules! migrations {
    ($($version:literal $file:literal $name:literal),* $(,)?) => {
        /// SQLite migrations.
        pub const SQLITE: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            script: include_str!(concat!("../../schemas/sql/", $file, ".sql")),
        }),*];

        /// ScyllaDB (CQL) migrations.
        pub const CQL: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            script: include_str!(concat!("../../schemas/cql/", $file, ".cql")),
        }),*];
    };
}

migrations!(
    1 "0001_init" "init",
    2 "0002_api_keys" "api_keys",
    3 "0003_users" "users",
    4 "0004_anomaly_explanation" "anomaly_explanation",
    5 "0005_daily_summaries" "daily_summaries",
    6 "0006_kpi_windows" "kpi_windows",
);

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

/// The statements of `pending` (migrations applied together, in order) for a server that cannot
/// run `ALTER TABLE` (the in-memory CQL test double, `alter_table=false`), one list per
/// migration: every `ALTER TABLE t ADD ...` is folded into the `CREATE TABLE t` of a migration
/// of the same list, so a keyspace migrated from scratch ends with the columns a real cluster
/// has. An ALTER of a table created by an earlier run, or any other ALTER, cannot be folded: an
/// error naming the migration.
pub fn fold_added_columns(pending: &[Migration]) -> Result<Vec<Vec<String>>, Error> {
    let mut folded: Vec<Vec<String>> = Vec::with_capacity(pending.len());
    for m in pending {
        let fail = |message: String| Error::Migration {
            version: m.version,
            name: m.name,
            message,
        };
        let mut own: Vec<String> = Vec::new();
        for statement in statements(m.script) {
            let Some(alter) = strip_prefix_ignore_case(&statement, "ALTER TABLE ") else {
                own.push(statement);
                continue;
            };
            let (table, columns) = added_columns(alter).ok_or_else(|| {
                fail(format!(
                    "`{statement}`: without ALTER TABLE (alter_table=false) only `ALTER TABLE <table> ADD ...` can be folded into a CREATE TABLE"
                ))
            })?;
            let create = folded
                .iter_mut()
                .flatten()
                .chain(own.iter_mut())
                .find(|s| created_table(s).is_some_and(|t| t.eq_ignore_ascii_case(table)))
                .ok_or_else(|| {
                    fail(format!(
                        "`{statement}`: this server cannot run ALTER TABLE (alter_table=false) and `{table}` is not created by a migration of this run (only a fresh keyspace can be migrated)"
                    ))
                })?;
            let open = create.find('(').expect("a CREATE TABLE has a column list") + 1;
            let space = if create[open..].starts_with(' ') { "" } else { " " };
            create.insert_str(open, &format!(" {},{space}", columns.join(", ")));
        }
        folded.push(own);
    }
    Ok(folded)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// `t ADD c type` or `t ADD (c1 type, c2 type)` (a normalized statement after `ALTER TABLE `):
/// the table and the column definitions.
fn added_columns(alter: &str) -> Option<(&str, Vec<String>)> {
    let (table, instruction) = alter.split_once(' ')?;
    let definitions = strip_prefix_ignore_case(instruction, "ADD ")?.trim();
    let definitions = match definitions.strip_prefix('(') {
        Some(list) => list.strip_suffix(')')?,
        None => definitions,
    };
    // Split on the commas outside `<...>` (collection types such as `map<text, text>`).
    let mut columns = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in definitions.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                columns.push(definitions[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    columns.push(definitions[start..].trim().to_string());
    let well_formed = columns.iter().all(|c| c.split_whitespace().count() >= 2);
    well_formed.then_some((table, columns))
}

/// The table a `CREATE TABLE` statement creates.
fn created_table(statement: &str) -> Option<&str> {
    let rest = strip_prefix_ignore_case(statement, "CREATE TABLE ")?;
    let rest = strip_prefix_ignore_case(rest, "IF NOT EXISTS ").unwrap_or(rest);
    rest.split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .filter(|t| !t.is_empty())
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

    #[test]
    fn added_columns_are_folded_into_the_create_table_of_the_same_run() {
        let folded = fold_added_columns(CQL).unwrap();
        assert_eq!(folded.len(), CQL.len());
        let anomalies: Vec<&String> = folded[0]
            .iter()
            .filter(|s| created_table(s) == Some("anomalies"))
            .collect();
        assert_eq!(anomalies.len(), 1);
        assert!(
            anomalies[0].starts_with(
                "CREATE TABLE IF NOT EXISTS anomalies ( statistical_score double, explanation text, tenant_id text,"
            ),
            "{}",
            anomalies[0]
        );
        assert!(
            folded[3].is_empty(),
            "migration 4 only adds columns: {:?}",
            folded[3]
        );
        let unfolded: Vec<Vec<String>> = CQL.iter().map(|m| statements(m.script)).collect();
        assert_eq!(
            folded[1..3],
            unfolded[1..3],
            "migrations without ALTER are unchanged"
        );
    }

    #[test]
    fn an_alter_of_a_table_of_an_earlier_run_cannot_be_folded() {
        let err = fold_added_columns(&CQL[3..]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Migration {
                    version: 4,
                    name: "anomaly_explanation",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("alter_table=false"), "{err}");
    }

    #[test]
    fn only_alter_table_add_is_folded() {
        let create = Migration {
            version: 1,
            name: "t",
            script: "CREATE TABLE t (k text PRIMARY KEY, v text);",
        };
        let fold = |script: &'static str| {
            fold_added_columns(&[
                create,
                Migration {
                    version: 2,
                    name: "u",
                    script,
                },
            ])
        };
        assert_eq!(
            fold("alter table T add m map<text, text>; ALTER TABLE t ADD (a int, b list<int>);").unwrap(),
            vec![
                vec![
                    "CREATE TABLE t ( a int, b list<int>, m map<text, text>, k text PRIMARY KEY, v text)"
                        .to_string()
                ],
                vec![]
            ]
        );
        assert!(fold("ALTER TABLE t DROP v;").is_err());
        assert!(fold("ALTER TABLE t ADD (a);").is_err());
        assert!(fold("ALTER TABLE other ADD a int;").is_err());
    }

    #[test]
    fn both_backends_add_the_same_columns() {
        let added = |set: &[Migration]| -> Vec<(u32, String, String)> {
            let mut columns: Vec<(u32, String, String)> = set
                .iter()
                .flat_map(|m| statements(m.script).into_iter().map(move |s| (m.version, s)))
                .filter_map(|(version, s)| {
                    let alter =
                        strip_prefix_ignore_case(&s, "ALTER TABLE ")?.replace(" ADD COLUMN ", " ADD ");
                    let (table, columns) = added_columns(&alter)?;
                    let table = table.to_string();
                    Some(
                        columns
                            .into_iter()
                            .map(|c| {
                                (
                                    version,
                                    table.clone(),
                                    c.split_whitespace().next().unwrap().to_string(),
                                )
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .flatten()
                .collect();
            columns.sort();
            columns
        };
        let sqlite = added(SQLITE);
        assert_eq!(sqlite, added(CQL));
        assert_eq!(
            sqlite,
            vec![
                (4, "anomalies".into(), "explanation".into()),
                (4, "anomalies".into(), "statistical_score".into())
            ]
        );
    }
}
