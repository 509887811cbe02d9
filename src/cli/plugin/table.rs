//! kubectl's table: upper-case headers, columns three spaces apart, no borders. Pure:
//! rows of cells in, text out; colour only when the caller says the output is a terminal.

/// How a cell stands out on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tone: Tone::Plain,
        }
    }

    pub fn toned(text: impl Into<String>, tone: Tone) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
}

const GAP: usize = 3;

/// The table as text, one line per row after the header, each ending in a newline.
/// `colour` adds ANSI colours (never when the output is not a terminal).
pub fn render(headers: &[&str], rows: &[Vec<Cell>], colour: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.text.chars().count());
        }
    }
    let mut text = String::new();
    let header_cells: Vec<Cell> = headers.iter().map(|h| Cell::plain(*h)).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let last = index + 1 == row.len();
            let padding = if last {
                0
            } else {
                width - cell.text.chars().count() + GAP
            };
            match (colour, cell.tone) {
                (true, Tone::Good) => line.push_str(&format!("\x1b[32m{}\x1b[0m", cell.text)),
                (true, Tone::Bad) => line.push_str(&format!("\x1b[31m{}\x1b[0m", cell.text)),
                _ => line.push_str(&cell.text),
            }
            line.push_str(&" ".repeat(padding));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_like_kubectl() {
        let rows = vec![
            vec![Cell::plain("web"), Cell::toned("2", Tone::Bad)],
            vec![Cell::plain("checkout"), Cell::plain("0")],
        ];
        assert_eq!(
            render(&["NAME", "VIOLATIONS"], &rows, false),
            "NAME       VIOLATIONS\nweb        2\ncheckout   0\n"
        );
    }

    #[test]
    fn colours_only_when_asked() {
        let rows = vec![vec![
            Cell::toned("True", Tone::Good),
            Cell::toned("3", Tone::Bad),
        ]];
        let coloured = render(&["READY", "VIOLATIONS"], &rows, true);
        assert_eq!(
            coloured.lines().nth(1),
            Some("\x1b[32mTrue\x1b[0m    \x1b[31m3\x1b[0m")
        );
        assert!(!render(&["READY", "VIOLATIONS"], &rows, false).contains('\x1b'));
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(render(&["NAME", "MODE"], &[], false), "NAME   MODE\n");
    }
}
