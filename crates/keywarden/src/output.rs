//! Everything the policy commands print: aligned tables and `key value` lines for people, or
//! JSON with `--json`. JSON is the wire data with its field names (`keywarden_dbus::policy`):
//! times stay Unix seconds with 0 for unset, so scripts need no date parsing.

use serde::Serialize;

use crate::error::Error;

/// How to print: for people, or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// `--json` was given.
    pub json: bool,
}

impl Output {
    /// A list: a table with `headers` and one `row` per item, or a JSON array of the items.
    pub fn list<T: Serialize>(
        &self,
        items: &[T],
        headers: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> Result<(), Error> {
        if self.json {
            return print_json(&items);
        }
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        print!("{}", table(headers, &rows));
        Ok(())
    }

    /// One record: `name value` lines, or a JSON object (`value` serialised as it is).
    pub fn record<T: Serialize>(&self, value: &T, lines: &[(&str, String)]) -> Result<(), Error> {
        if self.json {
            return print_json(value);
        }
        let width = lines
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in lines {
            println!("{k:<width$}  {v}");
        }
        Ok(())
    }

    /// A one-line result (`granted permission 12`), or a JSON object.
    pub fn line<T: Serialize>(&self, value: &T, text: impl std::fmt::Display) -> Result<(), Error> {
        if self.json {
            return print_json(value);
        }
        println!("{text}");
        Ok(())
    }
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Error> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Columns left-aligned to the widest cell, two spaces apart, no trailing spaces; the header row
/// first. Every line ends in `\n`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(width) => *width = (*width).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `yes` or `no`.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// A number, or `fallback` for 0.
pub fn or_zero(n: impl Into<u64>, fallback: &str) -> String {
    match n.into() {
        0 => fallback.to_owned(),
        n => n.to_string(),
    }
}

/// A string, or `fallback` when empty.
pub fn or_empty(s: &str, fallback: &str) -> String {
    if s.is_empty() {
        fallback.to_owned()
    } else {
        s.to_owned()
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let rows = vec![
            vec![
                "204".to_owned(),
                "unit".to_owned(),
                "resident has a dog".to_owned(),
            ],
            vec!["Pool gate".to_owned(), "amenity".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["LABEL", "KIND", "NOTES"], &rows),
            "LABEL      KIND     NOTES\n\
             204        unit     resident has a dog\n\
             Pool gate  amenity\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(table(&["ID", "SUBJECT"], &[]), "ID  SUBJECT\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let rows = vec![vec!["Zoë".to_owned(), "x".to_owned()]];
        assert_eq!(table(&["NAME", "R"], &rows), "NAME  R\nZoë   x\n");
    }

    #[test]
    fn small_formatters() {
        assert_eq!(yes_no(true), "yes");
        assert_eq!(or_zero(0u32, "default"), "default");
        assert_eq!(or_zero(30u32, "default"), "30");
        assert_eq!(or_empty("", "-"), "-");
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
