//! Streaming, line-numbered reading of delimited trace files (plain or gzip), with bad-row
//! accounting. Loaders are iterators: memory stays bounded whatever the file size.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// A file could not be opened or read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Opening or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A row was malformed and `--strict` asked to stop at the first one.
    #[error("{0}")]
    BadRow(RowError),
    /// The input as a whole makes no sense (no rows, unknown kind, empty folder).
    #[error("{path}: {reason}")]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One malformed row: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Counts malformed rows and keeps the first few for the report.
#[derive(Debug, Clone, Default)]
pub struct BadRows {
    /// Number of malformed rows seen.
    pub count: u64,
    /// The first [`BadRows::KEEP`] of them.
    pub examples: Vec<RowError>,
    /// Stop at the first malformed row.
    pub strict: bool,
}

impl BadRows {
    /// How many examples are kept.
    pub const KEEP: usize = 10;

    /// Counting mode (`strict = false`) or stop-at-first mode.
    pub fn new(strict: bool) -> Self {
        Self {
            strict,
            ..Self::default()
        }
    }

    /// Records a bad row; in strict mode returns it as an error to stop on.
    pub fn record(&mut self, e: RowError) -> Result<(), LoadError> {
        self.count += 1;
        if self.strict {
            return Err(LoadError::BadRow(e));
        }
        if self.examples.len() < Self::KEEP {
            self.examples.push(e);
        }
        Ok(())
    }

    /// Unwraps an iterator item, recording bad rows; `Ok(None)` means "skip this one".
    pub fn take<T>(&mut self, item: Result<T, RowError>) -> Result<Option<T>, LoadError> {
        match item {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.record(e).map(|()| None),
        }
    }

    /// A short human summary (`3 bad rows skipped; first: file:12: …`).
    pub fn summary(&self) -> String {
        match self.examples.first() {
            None if self.count == 0 => "no bad rows".into(),
            None => format!("{} bad rows skipped", self.count),
            Some(first) => format!("{} bad rows skipped; first: {first}", self.count),
        }
    }
}

/// How fields are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    /// `,` (Alibaba, GPU trace).
    Comma,
    /// `;` followed by a tab (Bitbrains GWA-T-12).
    SemicolonTab,
    /// Runs of blanks (the Google-derived series).
    Whitespace,
}

/// Opens a file for reading, decompressing gzip when the content starts with the gzip magic.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io)?;
    let f = File::open(path).map_err(io)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(f),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
}

/// A row parser: fields and 1-based line number in, a value, a skip (`None`, e.g. a header)
/// or a reason out.
pub type ParseFn<T> = fn(&[&str], u64) -> Result<Option<T>, String>;

/// Iterator over the parsed rows of one file. Every item is a value or a [`RowError`] with
/// file and line; I/O errors mid-file end the iteration with one last error.
pub struct Rows<T> {
    reader: Box<dyn BufRead + Send>,
    path: PathBuf,
    line: u64,
    delimiter: Delimiter,
    parse: ParseFn<T>,
    buf: String,
    done: bool,
}

impl<T> Rows<T> {
    /// Reads `path` with `delimiter`, parsing each non-empty line with `parse`.
    pub fn open(path: &Path, delimiter: Delimiter, parse: ParseFn<T>) -> Result<Self, LoadError> {
        Ok(Self::from_reader(open_text(path)?, path, delimiter, parse))
    }

    /// Same over any reader (`path` is used in messages only).
    pub fn from_reader(
        reader: Box<dyn BufRead + Send>,
        path: &Path,
        delimiter: Delimiter,
        parse: ParseFn<T>,
    ) -> Self {
        Self {
            reader,
            path: path.to_owned(),
            line: 0,
            delimiter,
            parse,
            buf: String::new(),
            done: false,
        }
    }
}

impl<T> Iterator for Rows<T> {
    type Item = Result<T, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.line += 1;
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(RowError {
                        path: self.path.clone(),
                        line: self.line,
                        reason: format!("read failed: {e}"),
                    }));
                }
            }
            let text = self.buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let mut fields: Vec<&str> = Vec::with_capacity(16);
            match self.delimiter {
                Delimiter::Comma => fields.extend(text.split(',')),
                Delimiter::SemicolonTab => fields.extend(text.split(';').map(str::trim)),
                Delimiter::Whitespace => fields.extend(text.split_whitespace()),
            }
            match (self.parse)(&fields, self.line) {
                Ok(Some(v)) => return Some(Ok(v)),
                Ok(None) => {}
                Err(reason) => {
                    return Some(Err(RowError {
                        path: self.path.clone(),
                        line: self.line,
                        reason,
                    }));
                }
            }
        }
    }
}

/// Field helpers for parsers: each names the column in its error.
pub mod field {
    /// Checks the number of fields.
    pub fn count(f: &[&str], want: usize) -> Result<(), String> {
        if f.len() == want {
            Ok(())
        } else {
            Err(format!("expected {want} fields, found {}", f.len()))
        }
    }

    /// At least `want` fields.
    pub fn at_least(f: &[&str], want: usize) -> Result<(), String> {
        if f.len() >= want {
            Ok(())
        } else {
            Err(format!(
                "expected at least {want} fields, found {}",
                f.len()
            ))
        }
    }

    /// A required finite float.
    pub fn f64(f: &[&str], i: usize, name: &str) -> Result<f64, String> {
        let s = f.get(i).map(|s| s.trim()).unwrap_or("");
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("column {name}: {s:?} is not a number")),
        }
    }

    /// An optional float: empty means `None`.
    pub fn opt_f64(f: &[&str], i: usize, name: &str) -> Result<Option<f64>, String> {
        match f.get(i).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(_) => f64(f, i, name).map(Some),
        }
    }

    /// A required integer (a float with no fraction is accepted, as some exports write `12.0`).
    pub fn i64(f: &[&str], i: usize, name: &str) -> Result<i64, String> {
        let s = f.get(i).map(|s| s.trim()).unwrap_or("");
        if let Ok(v) = s.parse::<i64>() {
            return Ok(v);
        }
        match s.parse::<f64>() {
            #[allow(clippy::cast_possible_truncation)]
            Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(v as i64),
            _ => Err(format!("column {name}: {s:?} is not an integer")),
        }
    }

    /// An optional integer.
    pub fn opt_i64(f: &[&str], i: usize, name: &str) -> Result<Option<i64>, String> {
        match f.get(i).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(_) => i64(f, i, name).map(Some),
        }
    }

    /// A required non-empty string.
    pub fn string(f: &[&str], i: usize, name: &str) -> Result<String, String> {
        match f.get(i).map(|s| s.trim()) {
            Some(s) if !s.is_empty() => Ok(s.to_owned()),
            _ => Err(format!("column {name}: missing")),
        }
    }

    /// True when the first field is not a number: a header line.
    pub fn looks_like_header(f: &[&str]) -> bool {
        f.first().is_some_and(|s| s.trim().parse::<f64>().is_err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse_pair(f: &[&str], _line: u64) -> Result<Option<(i64, f64)>, String> {
        field::count(f, 2)?;
        Ok(Some((field::i64(f, 0, "a")?, field::f64(f, 1, "b")?)))
    }

    #[test]
    fn reads_plain_and_gzip_with_line_numbers() {
        let dir = std::env::temp_dir().join(format!("tide-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("a.csv");
        std::fs::write(&plain, "1,2.5\n\n2,oops\n3\n4,4\n").unwrap();
        let gz = dir.join("a.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(b"1,2.5\n\n2,oops\n3\n4,4\n").unwrap();
        enc.finish().unwrap();
        for path in [&plain, &gz] {
            let rows: Vec<_> = Rows::open(path, Delimiter::Comma, parse_pair)
                .unwrap()
                .collect();
            assert_eq!(rows.len(), 4);
            assert_eq!(rows[0], Ok((1, 2.5)));
            let e = rows[1].clone().unwrap_err();
            assert_eq!(
                (e.line, e.reason.as_str()),
                (3, "column b: \"oops\" is not a number")
            );
            assert_eq!(rows[2].clone().unwrap_err().line, 4);
            assert_eq!(rows[3], Ok((4, 4.0)));
            assert!(e.to_string().contains(":3: column b"), "{e}");
        }
        let mut bad = BadRows::new(false);
        let good: Vec<_> = Rows::open(&plain, Delimiter::Comma, parse_pair)
            .unwrap()
            .filter_map(|r| bad.take(r).unwrap())
            .collect();
        assert_eq!((good.len(), bad.count), (2, 2));
        assert!(
            bad.summary().starts_with("2 bad rows skipped; first:"),
            "{}",
            bad.summary()
        );
        let mut strict = BadRows::new(true);
        let mut it = Rows::open(&plain, Delimiter::Comma, parse_pair).unwrap();
        assert!(strict.take(it.next().unwrap()).is_ok());
        assert!(
            matches!(strict.take(it.next().unwrap()), Err(LoadError::BadRow(e)) if e.line == 3)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = Rows::open(
            Path::new("/nonexistent/x.csv"),
            Delimiter::Comma,
            parse_pair,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.csv"), "{err}");
    }
}
