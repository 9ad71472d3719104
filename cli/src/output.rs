//! How results reach people and programs: aligned tables (coloured only on a terminal,
//! and never with `NO_COLOR` set), a spinner on stderr for long work, and `--json`.

use std::io::{IsTerminal, Write};

/// Where output goes and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// One JSON document (or one JSON line per event) instead of text.
    pub json: bool,
    color: bool,
    spinner: bool,
}

impl Out {
    /// Decides colours and the spinner from the terminal and the environment.
    pub fn new(json: bool) -> Out {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            json,
            color: !json && !no_color && std::io::stdout().is_terminal(),
            spinner: !json && std::io::stderr().is_terminal(),
        }
    }

    /// `text` in green (pass), red (fail) or yellow (skip) when colours are on.
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Meh => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Shows "⠋ what…" on stderr until [`Out::done_progress`] (terminal only).
    pub fn progress(&self, what: &str) {
        if self.spinner {
            eprint!("\r\x1b[2K… {what}");
            let _ = std::io::stderr().flush();
        }
    }

    /// Clears the progress line.
    pub fn done_progress(&self) {
        if self.spinner {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }

    /// Prints one JSON value on its own line.
    pub fn json_line(&self, value: &serde_json::Value) {
        println!("{value}");
    }
}

/// A colour's meaning.
#[derive(Debug, Clone, Copy)]
pub enum Tone {
    /// Passed, healthy.
    Good,
    /// Failed.
    Bad,
    /// Skipped, unknown.
    Meh,
}

/// Rows as aligned columns; the first row is the header. `paint` may colour a cell after
/// its width was measured, so escapes never break the alignment.
pub fn table(rows: &[Vec<String>], paint: impl Fn(usize, usize, &str) -> String) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (r, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let last = c + 1 == row.len();
            let pad = if last {
                0
            } else {
                widths[c] - cell.chars().count() + 2
            };
            line.push_str(&paint(r, c, cell));
            line.push_str(&" ".repeat(pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Text from the network may hold terminal escapes: control characters become `�`.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_ignores_paint_width() {
        let rows = vec![
            vec!["NAME".to_string(), "RESULT".into(), "DETAIL".into()],
            vec!["a/long-name".into(), "pass".into(), "x".into()],
        ];
        let text = table(&rows, |r, c, s| {
            if r == 1 && c == 1 {
                format!("<{s}>")
            } else {
                s.to_string()
            }
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME         RESULT  DETAIL");
        assert_eq!(lines[1], "a/long-name  <pass>    x");
    }

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(printable("a\x1b[31mb\n"), "a\u{fffd}[31mb\u{fffd}");
    }
}
