//! Markdown for the reports: tables, and the [`row!`](crate::row) of cells they take.

use std::fmt::Write as _;

/// A table: `header` names the columns (`a | b | c`), `align` aligns them (`l` or `r` per
/// column). A cell's `|` is escaped and its line breaks become spaces, so one row stays
/// one line.
pub fn table(header: &str, align: &str, rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = format!("| {header} |\n|");
    for a in align.chars() {
        out.push_str(if a == 'r' { "---:|" } else { "---|" });
    }
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| c.replace('|', "\\|").replace('\n', " "))
            .collect();
        // An empty cell is one space wide, as in a hand-written table.
        let _ = writeln!(out, "| {} |", cells.join(" | ").replace("|  |", "| |"));
    }
    out
}

/// The cells of a table row, each written with its `Display`.
#[macro_export]
macro_rules! row {
    ($($cell:expr),* $(,)?) => { vec![$($cell.to_string()),*] };
}
