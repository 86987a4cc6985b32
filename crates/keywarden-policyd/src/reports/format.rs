//! Pure formatting of report rows: no SQLite here, only cells in and bytes out.
//!
//! - **table**: for people. Aligned columns, times in the site's time zone
//!   (`2026-11-23 10:00:05`), flags `yes`/empty. Column widths need every row, so this format
//!   keeps the rendered cells (in one buffer) until [`ReportWriter::finish`].
//! - **csv**: RFC 4180. A header line, CRLF line ends, a field quoted (with `""` for a quote)
//!   only when it holds a comma, a quote, CR or LF. Times RFC 3339 in UTC
//!   (`2026-11-23T10:00:05Z`, milliseconds when not zero), flags `true`/`false`, NULL empty.
//! - **json**: one JSON array of objects (column name → value), one object per line, so it is
//!   both a single JSON document and easy to process line by line. Times as in CSV, as strings;
//!   numbers as numbers, flags as `true`/`false`, NULL as `null`.
//!
//! CSV and JSON are streamed: each row is written (into a buffered writer) as it arrives.

use std::fmt;
use std::io::{self, Write};

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Aligned text for people.
    #[default]
    Table,
    /// RFC 4180 CSV.
    Csv,
    /// A JSON array, one object per line.
    Json,
}

impl Format {
    /// The wire name: `table`, `csv`, `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    /// Parse a wire name.
    pub fn parse(text: &str) -> Option<Format> {
        [Format::Table, Format::Csv, Format::Json]
            .into_iter()
            .find(|f| f.as_str() == text)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Unix milliseconds.
    Time,
    /// Text.
    Text,
    /// An integer.
    Int,
    /// 0 or 1.
    Flag,
}

/// A report column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name (header, JSON key): lowercase ASCII and `_`.
    pub name: &'static str,
    /// What it holds.
    pub kind: ColumnType,
}

/// One value of a row, borrowed from the result set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A real (not produced by the statements; written as is).
    Real(f64),
    /// Text.
    Text(&'a str),
}

/// Writes a report's rows in one format. Call [`ReportWriter::row`] per row, then
/// [`ReportWriter::finish`] (which writes the table, or closes the JSON array, and flushes).
pub struct ReportWriter<W: Write> {
    out: W,
    format: Format,
    columns: &'static [Column],
    zone: TimeZone,
    rows: u64,
    /// Table only: every rendered cell, back to back, and where each ends.
    text: String,
    ends: Vec<usize>,
}

impl<W: Write> ReportWriter<W> {
    /// A writer for rows of `columns`; table times are shown in `zone`. Writes the CSV header
    /// or the opening of the JSON array at once.
    pub fn new(
        mut out: W,
        format: Format,
        columns: &'static [Column],
        zone: TimeZone,
    ) -> io::Result<Self> {
        match format {
            Format::Csv => {
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(c.name.as_bytes())?;
                }
                out.write_all(b"\r\n")?;
            }
            Format::Json => out.write_all(b"[")?,
            Format::Table => {}
        }
        Ok(ReportWriter {
            out,
            format,
            columns,
            zone,
            rows: 0,
            text: String::new(),
            ends: Vec::new(),
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Write one row; `cells` has one value per column.
    pub fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        match self.format {
            Format::Csv => self.csv_row(cells)?,
            Format::Json => self.json_row(cells)?,
            Format::Table => self.table_row(cells),
        }
        self.rows += 1;
        Ok(())
    }

    /// Finish the output (the table, or the end of the JSON array), flush, hand back the
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        match self.format {
            Format::Csv => {}
            Format::Json => {
                if self.rows == 0 {
                    self.out.write_all(b"]\n")?;
                } else {
                    self.out.write_all(b"\n]\n")?;
                }
            }
            Format::Table => self.write_table()?,
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn csv_row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        for (i, (column, cell)) in self.columns.iter().zip(cells).enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            match (column.kind, *cell) {
                (_, Cell::Null) => {}
                (ColumnType::Time, Cell::Int(ms)) => write_utc(&mut self.out, ms)?,
                (ColumnType::Flag, Cell::Int(v)) => {
                    self.out
                        .write_all(if v != 0 { b"true" } else { b"false" })?
                }
                (_, Cell::Int(v)) => write!(self.out, "{v}")?,
                (_, Cell::Real(v)) => write!(self.out, "{v}")?,
                (_, Cell::Text(s)) => write_csv_field(&mut self.out, s)?,
            }
        }
        self.out.write_all(b"\r\n")
    }

    fn json_row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.out
            .write_all(if self.rows == 0 { b"\n{" } else { b",\n{" })?;
        for (i, (column, cell)) in self.columns.iter().zip(cells).enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            // Column names are lowercase ASCII: no escaping needed.
            self.out.write_all(b"\"")?;
            self.out.write_all(column.name.as_bytes())?;
            self.out.write_all(b"\":")?;
            match (column.kind, *cell) {
                (_, Cell::Null) => self.out.write_all(b"null")?,
                (ColumnType::Time, Cell::Int(ms)) => {
                    self.out.write_all(b"\"")?;
                    write_utc(&mut self.out, ms)?;
                    self.out.write_all(b"\"")?;
                }
                (ColumnType::Flag, Cell::Int(v)) => {
                    self.out
                        .write_all(if v != 0 { b"true" } else { b"false" })?
                }
                (_, Cell::Int(v)) => write!(self.out, "{v}")?,
                (_, Cell::Real(v)) if v.is_finite() => write!(self.out, "{v}")?,
                (_, Cell::Real(_)) => self.out.write_all(b"null")?,
                (_, Cell::Text(s)) => write_json_string(&mut self.out, s)?,
            }
        }
        self.out.write_all(b"}")
    }

    fn table_row(&mut self, cells: &[Cell<'_>]) {
        use std::fmt::Write as _;
        for (column, cell) in self.columns.iter().zip(cells) {
            // Writing into a String cannot fail.
            let _ = match (column.kind, *cell) {
                (_, Cell::Null) => Ok(()),
                (ColumnType::Time, Cell::Int(ms)) => match Timestamp::from_millisecond(ms) {
                    Ok(t) => write!(
                        self.text,
                        "{}",
                        t.to_zoned(self.zone.clone()).strftime("%Y-%m-%d %H:%M:%S")
                    ),
                    Err(_) => write!(self.text, "{ms}"),
                },
                (ColumnType::Flag, Cell::Int(v)) => {
                    self.text.push_str(if v != 0 { "yes" } else { "" });
                    Ok(())
                }
                (_, Cell::Int(v)) => write!(self.text, "{v}"),
                (_, Cell::Real(v)) => write!(self.text, "{v}"),
                (_, Cell::Text(s)) => {
                    // One line per row: control characters become spaces.
                    self.text
                        .extend(s.chars().map(|c| if c.is_control() { ' ' } else { c }));
                    Ok(())
                }
            };
            self.ends.push(self.text.len());
        }
    }

    fn write_table(&mut self) -> io::Result<()> {
        let n = self.columns.len();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.name.len()).collect();
        let mut start = 0;
        for (i, end) in self.ends.iter().enumerate() {
            let w = self.text[start..*end].chars().count();
            widths[i % n] = widths[i % n].max(w);
            start = *end;
        }
        let line = |out: &mut W, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
            let mut pending = 0usize;
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    pending += 2;
                }
                if !cell.is_empty() {
                    write!(out, "{:pending$}{cell}", "")?;
                    pending = 0;
                }
                pending += widths[i].saturating_sub(cell.chars().count());
            }
            out.write_all(b"\n")
        };
        line(
            &mut self.out,
            &mut self
                .columns
                .iter()
                .map(|c| c.name.to_uppercase())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        )?;
        let mut start = 0;
        for row in self.ends.chunks(n) {
            let text = &self.text;
            let mut cells = row.iter().map(|end| {
                let cell = &text[start..*end];
                start = *end;
                cell
            });
            line(&mut self.out, &mut cells)?;
        }
        Ok(())
    }
}

/// A time as RFC 3339 in UTC (milliseconds only when not zero); out of range as the number.
fn write_utc(out: &mut impl Write, ms: i64) -> io::Result<()> {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => write!(out, "{t}"),
        Err(_) => write!(out, "{ms}"),
    }
}

/// An RFC 4180 field: quoted only when needed.
fn write_csv_field(out: &mut impl Write, s: &str) -> io::Result<()> {
    if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        return out.write_all(s.as_bytes());
    }
    out.write_all(b"\"")?;
    let mut rest = s;
    while let Some(i) = rest.find('"') {
        out.write_all(&rest.as_bytes()[..=i])?;
        out.write_all(b"\"")?;
        rest = &rest[i + 1..];
    }
    out.write_all(rest.as_bytes())?;
    out.write_all(b"\"")
}

/// A JSON string literal.
fn write_json_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.write_all(&bytes[plain..i])?;
        match escape {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        plain = i + 1;
    }
    out.write_all(&bytes[plain..])?;
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: &[Column] = &[
        Column {
            name: "at",
            kind: ColumnType::Time,
        },
        Column {
            name: "who",
            kind: ColumnType::Text,
        },
        Column {
            name: "n",
            kind: ColumnType::Int,
        },
        Column {
            name: "late",
            kind: ColumnType::Flag,
        },
    ];

    /// 2026-11-23T10:00:05Z.
    const T: i64 = 1_795_428_005_000;

    fn render(format: Format, rows: &[[Cell<'_>; 4]]) -> String {
        let mut w = ReportWriter::new(
            Vec::new(),
            format,
            COLS,
            TimeZone::fixed(jiff::tz::offset(1)),
        )
        .unwrap();
        for r in rows {
            w.row(r).unwrap();
        }
        assert_eq!(w.rows(), rows.len() as u64);
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    fn rows() -> Vec<[Cell<'static>; 4]> {
        vec![
            [
                Cell::Int(T),
                Cell::Text("alice"),
                Cell::Int(3),
                Cell::Int(1),
            ],
            [
                Cell::Int(T + 1),
                Cell::Text("a \"b\", c\nd"),
                Cell::Null,
                Cell::Int(0),
            ],
        ]
    }

    #[test]
    fn csv_is_rfc_4180() {
        assert_eq!(
            render(Format::Csv, &rows()),
            "at,who,n,late\r\n\
             2026-11-23T10:00:05Z,alice,3,true\r\n\
             2026-11-23T10:00:05.001Z,\"a \"\"b\"\", c\nd\",,false\r\n"
        );
        assert_eq!(render(Format::Csv, &[]), "at,who,n,late\r\n");
    }

    #[test]
    fn json_is_one_array_with_an_object_per_line() {
        let text = render(Format::Json, &rows());
        assert_eq!(
            text,
            "[\n{\"at\":\"2026-11-23T10:00:05Z\",\"who\":\"alice\",\"n\":3,\"late\":true},\n\
             {\"at\":\"2026-11-23T10:00:05.001Z\",\"who\":\"a \\\"b\\\", c\\nd\",\"n\":null,\"late\":false}\n]\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[1]["who"], "a \"b\", c\nd");
        assert_eq!(render(Format::Json, &[]), "[]\n");
        let odd = render(
            Format::Json,
            &[[Cell::Null, Cell::Text("\u{1}\\é"), Cell::Null, Cell::Null]],
        );
        let parsed: serde_json::Value = serde_json::from_str(&odd).unwrap();
        assert_eq!(parsed[0]["who"], "\u{1}\\é");
    }

    #[test]
    fn table_aligns_columns_in_the_site_time_zone() {
        assert_eq!(
            render(Format::Table, &rows()),
            "AT                   WHO         N  LATE\n\
             2026-11-23 11:00:05  alice       3  yes\n\
             2026-11-23 11:00:05  a \"b\", c d\n"
        );
        assert_eq!(render(Format::Table, &[]), "AT  WHO  N  LATE\n");
    }
}
