//! Plain-text tables and key/value listings for the operator commands.
//!
//! Column widths come from the content (counted in characters); numeric columns can be
//! right-aligned. A table can also be printed in pieces, for `traces tail --follow`:
//! widths only ever grow, so later rows stay under their headers as far as possible.

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// Headers, alignment and rows.
pub(super) struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with left-aligned columns.
    pub(super) fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            aligns: vec![Align::Left; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the given columns.
    pub(super) fn right(mut self, columns: &[usize]) -> Table {
        for &column in columns {
            if let Some(align) = self.aligns.get_mut(column) {
                *align = Align::Right;
            }
        }
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub(super) fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The whole table, header first, one line per row, each ending in a newline.
    pub(super) fn render(&self) -> String {
        let mut widths = Vec::new();
        self.render_with(&mut widths, true)
    }

    /// Renders with at least `widths`, widening them to fit; the header is optional so a
    /// follower can print it once.
    pub(super) fn render_with(&self, widths: &mut Vec<usize>, header: bool) -> String {
        self.grow(widths);
        let mut out = String::new();
        if header {
            out.push_str(&self.line(&self.headers, widths));
        }
        for row in &self.rows {
            out.push_str(&self.line(row, widths));
        }
        out
    }

    fn grow(&self, widths: &mut Vec<usize>) {
        widths.resize(self.headers.len().max(widths.len()), 0);
        for cells in std::iter::once(&self.headers).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }

    fn line(&self, cells: &[String], widths: &[usize]) -> String {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            let pad = widths[index].saturating_sub(cell.chars().count());
            match self.aligns[index] {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left if index == last => line.push_str(cell),
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            if index != last {
                line.push_str("  ");
            }
        }
        line.push('\n');
        line
    }
}

/// `key  value` lines with the keys padded to one width.
pub(super) fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(key, _)| key.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| format!("{key:<width$}  {value}\n"))
        .collect()
}

/// The API's JSON, pretty-printed, for `--json`.
pub(super) fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut table = Table::new(&["ID", "AMOUNT", "NOTE"]).right(&[1]);
        table.row(vec!["a".into(), "1.50".into(), "short".into()]);
        table.row(vec!["longer-id".into(), "120.00".into(), "x".into()]);
        assert_eq!(
            table.render(),
            "ID         AMOUNT  NOTE\n\
             a            1.50  short\n\
             longer-id  120.00  x\n"
        );
    }

    #[test]
    fn follow_widths_only_grow() {
        let mut widths = Vec::new();
        let mut first = Table::new(&["A", "B"]);
        first.row(vec!["wide-cell".into(), "1".into()]);
        let head = first.render_with(&mut widths, true);
        assert_eq!(head, "A          B\nwide-cell  1\n");
        let mut next = Table::new(&["A", "B"]);
        next.row(vec!["x".into(), "2".into()]);
        assert_eq!(next.render_with(&mut widths, false), "x          2\n");
    }

    #[test]
    fn key_values_line_up() {
        let text = key_values(&[("id", "a.b".into()), ("phase", "COMMIT".into())]);
        assert_eq!(text, "id     a.b\nphase  COMMIT\n");
    }
}
