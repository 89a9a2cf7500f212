//! Markdown for the reports: tables, and the [`row!`](crate::row) of cells they take.

use std::fmt::Write as _;

/// A table: `header` names the columns (`a | b | c`), `align` aligns them (`l` or `r` per
/// column). A cell's `|` is escaped and its line breaks become spaces, so one row stays
/// one line.
pub(crate) fn table(
    header: &str,
    align: &str,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> String {
    let mut out = format!("| {header} |\n|");
    for a in align.chars() {
        out.push_str(if a == 'r' { "---:|" } else { "---|" });
    }
    out.push('\n');
    for row in rows {
        // A cell is padded by a space each side; an empty one is a single space.
        let cells = row
            .iter()
            .map(|c| match c.replace('|', "\\|").replace('\n', " ") {
                c if c.is_empty() => " ".to_string(),
                c => format!(" {c} "),
            });
        let _ = writeln!(out, "|{}|", cells.collect::<Vec<_>>().join("|"));
    }
    out
}

/// The cells of a table row, each written with its `Display`.
#[macro_export]
macro_rules! row {
    ($($cell:expr),* $(,)?) => { vec![$($cell.to_string()),*] };
}
