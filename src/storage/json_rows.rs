//! Inserts whose rows travel as one JSON parameter: a JSON array with one
//! array per row, unpacked by the statement (`json_each` on SQLite,
//! `json_array_elements` on PostgreSQL). However many rows, a table takes one
//! statement whose text never changes, so it is prepared once and cached.
//!
//! The group commit of pushes writes its records, their `record.created`
//! events and the events' deliveries this way, the three tables in one call
//! to the database ([`statement`]). Binding a few rows per statement (as
//! before) took one call per chunk and table: a commit of 15 pushes took 6
//! statements per table, each a hand-off to sqlx's SQLite thread (or a round
//! trip to PostgreSQL), and those calls were what a listened-to push paid
//! beyond a plain one.

use super::Backend;

/// Where a column's value comes from.
pub(super) enum Column {
    /// The row's element at this index, as text (JSON `null`: SQL `NULL`).
    Text(usize),
    /// The row's element at this index, as a BIGINT.
    Int(usize),
    /// This SQL, the same for every row (`'pending'`, `0`).
    Sql(&'static str),
}

/// A table's insert from JSON rows.
pub(super) struct JsonRows {
    pub table: &'static str,
    pub columns: &'static [(&'static str, Column)],
}

impl JsonRows {
    /// `INSERT … SELECT …` from the rows bound at `$parameter`.
    fn insert(&self, backend: Backend, parameter: usize) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|(_, column)| match column {
                Column::Text(i) => format!("r.value->>{i}"),
                Column::Int(i) => format!("CAST(r.value->>{i} AS BIGINT)"),
                Column::Sql(sql) => (*sql).to_owned(),
            })
            .collect();
        let rows = match backend {
            Backend::Sqlite => format!("json_each(${parameter}) AS r"),
            Backend::Postgres => format!("json_array_elements(${parameter}::json) AS r(value)"),
        };
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {rows}",
            self.table,
            names.join(", "),
            values.join(", ")
        )
    }
}

/// One call that inserts into each of `tables` in order, the rows of the
/// n-th bound at `$n`. On SQLite, that many statements in one string: sqlx
/// runs them in turn on the connection's thread, for one hand-off. On
/// PostgreSQL, one statement, every insert but the last in `WITH`: each runs
/// to completion, and foreign keys are checked at the statement's end, so a
/// delivery finds its event inserted beside it.
pub(super) fn statement(backend: Backend, tables: &[&JsonRows]) -> String {
    let inserts: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, table)| table.insert(backend, i + 1))
        .collect();
    match (backend, inserts.split_last()) {
        (_, None) => String::new(),
        (Backend::Sqlite, _) => inserts.join("; "),
        (Backend::Postgres, Some((last, []))) => last.clone(),
        (Backend::Postgres, Some((last, first))) => {
            let with: Vec<String> = first
                .iter()
                .enumerate()
                .map(|(i, insert)| format!("w{i} AS ({insert})"))
                .collect();
            format!("WITH {} {last}", with.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETS: JsonRows = JsonRows {
        table: "pets",
        columns: &[
            ("id", Column::Text(0)),
            ("born", Column::Int(1)),
            ("state", Column::Sql("'new'")),
        ],
    };

    #[test]
    fn each_backend_unpacks_the_rows_its_own_way() {
        assert_eq!(
            statement(Backend::Sqlite, &[&PETS]),
            "INSERT INTO pets (id, born, state) SELECT r.value->>0, \
             CAST(r.value->>1 AS BIGINT), 'new' FROM json_each($1) AS r"
        );
        assert_eq!(
            statement(Backend::Postgres, &[&PETS]),
            "INSERT INTO pets (id, born, state) SELECT r.value->>0, \
             CAST(r.value->>1 AS BIGINT), 'new' FROM json_array_elements($1::json) AS r(value)"
        );
    }

    #[test]
    fn several_tables_take_one_call_their_rows_bound_in_order() {
        let sqlite = statement(Backend::Sqlite, &[&PETS, &PETS, &PETS]);
        assert_eq!(sqlite.matches("; INSERT INTO pets").count(), 2);
        assert!(sqlite.contains("json_each($1)") && sqlite.ends_with("json_each($3) AS r"));
        let postgres = statement(Backend::Postgres, &[&PETS, &PETS, &PETS]);
        assert!(postgres.starts_with("WITH w0 AS (INSERT INTO pets"));
        assert!(postgres.contains("), w1 AS (INSERT INTO pets"));
        assert!(postgres.ends_with("json_array_elements($3::json) AS r(value)"));
        assert!(!postgres.contains(';'));
    }
}
