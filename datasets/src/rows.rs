//! Streaming, line-numbered reading of delimited trace files (plain or gzip), with bad-row
//! and damaged-file accounting. Loaders are iterators: memory stays bounded whatever the file
//! size (a line is at most [`MAX_LINE`] bytes; longer ones are bad rows, skipped).
//!
//! A compressed file can be damaged in two ways, and each is counted, never taken as the end
//! of the data: *truncated* (the stream stops before its end marker: the rows before the cut
//! are sound and kept, the rest is missing) and *corrupt* (the decoder or the gzip checksum
//! refuses it: nothing decoded from it can be trusted, so loaders drop the file's rows). Both
//! are a [`Loss`] in [`BadRows`], and an error under `--strict`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::MultiGzDecoder;

/// Longest line accepted, bytes: longer lines are bad rows (and are not held in memory).
pub const MAX_LINE: usize = 64 * 1024;

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
    /// A file is truncated or corrupt and `--strict` asked to stop at the first one.
    #[error("{0}")]
    Damaged(Box<Loss>),
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

/// How a file's reading ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The compressed stream stops before its end: what came before is sound.
    Truncated,
    /// The decoder or the checksum refuses the stream: nothing decoded from it is trusted.
    Corrupt,
    /// The file could not be read further (an I/O error).
    Unreadable,
}

impl DamageKind {
    fn describe(self, compressed: bool) -> &'static str {
        match (self, compressed) {
            (DamageKind::Truncated, true) => "truncated gzip stream",
            (DamageKind::Truncated, false) => "truncated file",
            (DamageKind::Corrupt, true) => "corrupt gzip stream",
            (DamageKind::Corrupt, false) => "corrupt file",
            (DamageKind::Unreadable, _) => "read error",
        }
    }
}

/// Where and how a file's reading stopped before its end ([`Rows::damage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Truncated, corrupt or unreadable.
    pub kind: DamageKind,
    /// The decoder's or the system's message.
    pub cause: String,
    /// Whether the file is gzip.
    pub compressed: bool,
    /// Bytes of the file consumed when it was found (for gzip, of the compressed stream).
    pub offset: u64,
    /// The file's size, when it is a file.
    pub file_len: Option<u64>,
    /// The line being read.
    pub line: u64,
}

/// What one damaged file cost: recorded in [`BadRows`], an error in strict mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The file.
    pub path: PathBuf,
    /// How its reading stopped.
    pub damage: Damage,
    /// Rows kept from it (read before a truncation).
    pub rows_kept: u64,
    /// Text bytes kept from it.
    pub bytes_kept: u64,
    /// Rows lost: the rows dropped from a corrupt file, or the rows missing after a cut
    /// (estimated from the rest of the trace; `None` when nothing tells).
    pub rows_lost: Option<u64>,
    /// Text bytes lost, on the same terms as `rows_lost`.
    pub bytes_lost: Option<u64>,
    /// `rows_lost` and `bytes_lost` are estimates (a truncation's missing tail).
    pub estimated: bool,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.damage;
        write!(
            f,
            "{}: {} at byte {}",
            self.path.display(),
            d.kind.describe(d.compressed),
            d.offset
        )?;
        if let Some(len) = d.file_len {
            write!(f, " of {len}")?;
        }
        write!(f, " (line {}: {})", d.line, d.cause)?;
        let approx = if self.estimated { "~" } else { "" };
        match (self.rows_lost, self.bytes_lost) {
            (Some(r), Some(b)) => write!(f, ": {approx}{r} rows ({approx}{b} bytes) lost")?,
            (Some(r), None) => write!(f, ": {approx}{r} rows lost")?,
            _ => write!(f, ": the rest of the file is lost (how much is unknown)")?,
        }
        if d.kind == DamageKind::Corrupt {
            write!(f, ", every row decoded from it dropped")?;
        } else {
            write!(f, ", {} rows before it kept", self.rows_kept)?;
        }
        match d.file_len {
            Some(len) if len > d.offset => {
                write!(f, "; its last {} bytes were never decoded", len - d.offset)
            }
            _ => Ok(()),
        }
    }
}

/// Counts malformed rows and damaged files, and keeps the first few for the report.
#[derive(Debug, Clone, Default)]
pub struct BadRows {
    /// Number of malformed rows seen.
    pub count: u64,
    /// The first [`BadRows::KEEP`] of them.
    pub examples: Vec<RowError>,
    /// Stop at the first malformed row or damaged file.
    pub strict: bool,
    /// Every damaged file (truncated or corrupt) and what it cost.
    pub losses: Vec<Loss>,
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

    /// Records a damaged file; in strict mode returns it as an error to stop on.
    pub fn damaged(&mut self, loss: Loss) -> Result<(), LoadError> {
        if self.strict {
            return Err(LoadError::Damaged(Box::new(loss)));
        }
        self.losses.push(loss);
        Ok(())
    }

    /// How a file's reading ended, once its rows are consumed: `Ok(true)` when it was read
    /// to its end or its rows before a cut are kept; `Ok(false)` when it is corrupt and the
    /// caller must drop every row it took from it (bad rows included). A damaged file is
    /// recorded as a [`Loss`]; in strict mode it is an error.
    pub fn finish<T>(&mut self, rows: &Rows<T>) -> Result<bool, LoadError> {
        let Some(damage) = rows.damage().cloned() else {
            return Ok(true);
        };
        let corrupt = damage.kind == DamageKind::Corrupt;
        self.damaged(Loss {
            path: rows.path().to_owned(),
            rows_kept: if corrupt { 0 } else { rows.rows() },
            bytes_kept: if corrupt { 0 } else { rows.bytes() },
            rows_lost: corrupt.then(|| rows.rows()),
            bytes_lost: corrupt.then(|| rows.bytes()),
            estimated: false,
            damage,
        })?;
        Ok(!corrupt)
    }

    /// Drops a corrupt file's bad rows, keeping its recorded losses.
    pub fn drop_rows(&mut self) {
        self.count = 0;
        self.examples.clear();
    }

    /// Folds another file's counts into this one (examples up to [`BadRows::KEEP`]).
    pub fn merge(&mut self, other: BadRows) {
        self.count += other.count;
        for e in other.examples {
            if self.examples.len() < Self::KEEP {
                self.examples.push(e);
            }
        }
        self.losses.extend(other.losses);
    }

    /// Nothing was skipped or lost.
    pub fn is_clean(&self) -> bool {
        self.count == 0 && self.losses.is_empty()
    }

    /// Rows lost in damaged files (dropped, or estimated missing), and whether some damaged
    /// file lost an unknown number on top.
    pub fn rows_lost(&self) -> (u64, bool) {
        let known = self.losses.iter().filter_map(|l| l.rows_lost).sum();
        (known, self.losses.iter().any(|l| l.rows_lost.is_none()))
    }

    /// Text bytes lost in damaged files, on the same terms as [`BadRows::rows_lost`].
    pub fn bytes_lost(&self) -> (u64, bool) {
        let known = self.losses.iter().filter_map(|l| l.bytes_lost).sum();
        (known, self.losses.iter().any(|l| l.bytes_lost.is_none()))
    }

    /// A short human summary (`3 bad rows skipped; first: file:12: …`, then damaged files
    /// and the rows and bytes they lost).
    pub fn summary(&self) -> String {
        let mut s = match self.examples.first() {
            None if self.count == 0 && self.losses.is_empty() => "no bad rows".to_owned(),
            None if self.count == 0 => String::new(),
            None => format!("{} bad rows skipped", self.count),
            Some(first) => format!("{} bad rows skipped; first: {first}", self.count),
        };
        if let Some(first) = self.losses.first() {
            let (rows, rows_more) = self.rows_lost();
            let (bytes, bytes_more) = self.bytes_lost();
            let more = |m: bool| if m { " and more" } else { "" };
            if !s.is_empty() {
                s.push_str("; ");
            }
            s.push_str(&format!(
                "{} damaged file{}, {rows} rows{} and {bytes} bytes{} lost; first: {first}",
                self.losses.len(),
                if self.losses.len() == 1 { "" } else { "s" },
                more(rows_more),
                more(bytes_more),
            ));
        }
        s
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

/// A buffered file that counts the bytes its consumer has taken (for gzip: the compressed
/// bytes the decoder has used), so damage is reported at its offset.
struct Counted {
    inner: BufReader<File>,
    taken: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl BufRead for Counted {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.taken.fetch_add(amt as u64, Ordering::Relaxed);
    }
}

/// An opened file: its text, and how far into the file its reading has got.
pub struct Source {
    /// The text (decompressed when the file is gzip).
    pub reader: Box<dyn BufRead + Send>,
    /// Whether the file is gzip.
    pub compressed: bool,
    /// The file's size.
    pub file_len: u64,
    taken: Arc<AtomicU64>,
}

impl Source {
    /// Opens a file, decompressing gzip when the content starts with the gzip magic.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let file_len = f.metadata().map_err(io)?.len();
        let mut inner = BufReader::with_capacity(1 << 16, f);
        let compressed = inner.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let taken = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner,
            taken: taken.clone(),
        };
        let reader: Box<dyn BufRead + Send> = if compressed {
            Box::new(BufReader::with_capacity(
                1 << 16,
                MultiGzDecoder::new(counted),
            ))
        } else {
            Box::new(counted)
        };
        Ok(Self {
            reader,
            compressed,
            file_len,
            taken,
        })
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// A handle on the offset that stays valid after the reader is moved elsewhere.
    pub fn offset_handle(&self) -> impl Fn() -> u64 + Send + 'static {
        let taken = self.taken.clone();
        move || taken.load(Ordering::Relaxed)
    }
}

/// Opens a file for reading, decompressing gzip when the content starts with the gzip magic.
/// Prefer [`Rows::open`] or [`Source::open`], which also report where a file is damaged.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>, LoadError> {
    Source::open(path).map(|s| s.reader)
}

/// What an I/O error in the middle of a file means.
pub fn damage_kind(e: &io::Error) -> DamageKind {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => DamageKind::Truncated,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => DamageKind::Corrupt,
        _ => DamageKind::Unreadable,
    }
}

/// Reads one line into `buf` (without its `\n`), holding at most `cap` bytes of it. Returns
/// the bytes consumed (0 at the end) and whether the line was longer than `cap`.
pub fn read_line_capped(
    r: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<(usize, bool)> {
    buf.clear();
    let mut consumed = 0;
    let mut long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((consumed, long));
        }
        let (take, end) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let text = &avail[..if end { take - 1 } else { take }];
        let room = cap.saturating_sub(buf.len());
        if text.len() > room {
            long = true;
        }
        buf.extend_from_slice(&text[..text.len().min(room)]);
        r.consume(take);
        consumed += take;
        if end {
            return Ok((consumed, long));
        }
    }
}

/// A row parser: fields and 1-based line number in, a value, a skip (`None`, e.g. a header)
/// or a reason out.
pub type ParseFn<T> = fn(&[&str], u64) -> Result<Option<T>, String>;

/// Iterator over the parsed rows of one file. Every item is a value or a [`RowError`] with
/// file and line. A damaged file (truncated, corrupt, unreadable) ends the iteration early;
/// [`Rows::damage`] then says where and how, and [`BadRows::finish`] accounts for it.
pub struct Rows<T> {
    reader: Box<dyn BufRead + Send>,
    offset: Box<dyn Fn() -> u64 + Send>,
    compressed: bool,
    file_len: Option<u64>,
    path: PathBuf,
    line: u64,
    delimiter: Delimiter,
    parse: ParseFn<T>,
    buf: Vec<u8>,
    done: bool,
    rows: u64,
    bytes: u64,
    damage: Option<Damage>,
}

impl<T> Rows<T> {
    /// Reads `path` with `delimiter`, parsing each non-empty line with `parse`.
    pub fn open(path: &Path, delimiter: Delimiter, parse: ParseFn<T>) -> Result<Self, LoadError> {
        let src = Source::open(path)?;
        let offset = Box::new(src.offset_handle());
        let mut rows = Self::from_reader(src.reader, path, delimiter, parse);
        rows.offset = offset;
        rows.compressed = src.compressed;
        rows.file_len = Some(src.file_len);
        Ok(rows)
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
            offset: Box::new(|| 0),
            compressed: false,
            file_len: None,
            path: path.to_owned(),
            line: 0,
            delimiter,
            parse,
            buf: Vec::new(),
            done: false,
            rows: 0,
            bytes: 0,
            damage: None,
        }
    }

    /// The file (as named in messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line last read (1-based; 0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Data rows read so far, good or bad (blank lines and headers excluded).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Text bytes read so far (decompressed, for gzip).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Why the iteration ended before the end of the file, if it did.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }
}

impl<T> Iterator for Rows<T> {
    type Item = Result<T, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.line += 1;
            let long = match read_line_capped(&mut *self.reader, &mut self.buf, MAX_LINE) {
                Ok((0, _)) => {
                    self.done = true;
                    return None;
                }
                Ok((n, long)) => {
                    self.bytes += n as u64;
                    long
                }
                Err(e) => {
                    self.done = true;
                    self.damage = Some(Damage {
                        kind: damage_kind(&e),
                        cause: e.to_string(),
                        compressed: self.compressed,
                        offset: (self.offset)(),
                        file_len: self.file_len,
                        line: self.line,
                    });
                    return None;
                }
            };
            if long || std::str::from_utf8(&self.buf).is_err() {
                self.rows += 1;
                return Some(Err(RowError {
                    path: self.path.clone(),
                    line: self.line,
                    reason: if long {
                        format!("line longer than {MAX_LINE} bytes")
                    } else {
                        "not UTF-8 text".into()
                    },
                }));
            }
            let text = std::str::from_utf8(&self.buf).unwrap_or_default();
            let text = text.trim_end_matches('\r');
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
                Ok(Some(v)) => {
                    self.rows += 1;
                    return Some(Ok(v));
                }
                Ok(None) => {}
                Err(reason) => {
                    self.rows += 1;
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

    /// A required float within `range` (the column's physical bounds).
    pub fn f64_in(
        f: &[&str],
        i: usize,
        name: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<f64, String> {
        let v = f64(f, i, name)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "column {name}: {v} is outside [{}, {}]",
                range.start(),
                range.end()
            ))
        }
    }

    /// An optional float within `range`.
    pub fn opt_f64_in(
        f: &[&str],
        i: usize,
        name: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, String> {
        match f.get(i).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(_) => f64_in(f, i, name, range).map(Some),
        }
    }

    /// A required integer within `range`.
    pub fn i64_in(
        f: &[&str],
        i: usize,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, String> {
        let v = i64(f, i, name)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "column {name}: {v} is outside [{}, {}]",
                range.start(),
                range.end()
            ))
        }
    }

    /// An optional integer within `range`.
    pub fn opt_i64_in(
        f: &[&str],
        i: usize,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, String> {
        match f.get(i).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(_) => i64_in(f, i, name, range).map(Some),
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
    fn damaged_gzip_is_a_loss_never_a_bad_row_or_a_clean_end() {
        let dir = std::env::temp_dir().join(format!("tide-rows-damage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = (0..5000).map(|i| format!("{i},{}.5\n", i * 7)).collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let read = |name: &str, bytes: &[u8], strict: bool| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            let mut rows = Rows::open(&p, Delimiter::Comma, parse_pair).unwrap();
            let mut bad = BadRows::new(false);
            let good = rows.by_ref().filter_map(|r| bad.take(r).unwrap()).count();
            let mut outer = BadRows::new(strict);
            (good, bad, outer.finish(&rows).map(|keep| (keep, outer)))
        };
        // Sound: no loss.
        let (good, bad, fin) = read("ok.csv.gz", &gz, true);
        let (keep, outer) = fin.unwrap();
        assert_eq!((good, bad.count, keep), (5000, 0, true));
        assert!(outer.is_clean());
        // Cut: the rows before the cut are kept, the loss is recorded, strict stops.
        let cut = &gz[..gz.len() / 2];
        let (good, bad, fin) = read("cut.csv.gz", cut, false);
        let (keep, outer) = fin.unwrap();
        assert!(keep && good > 1000 && good < 5000, "{good}");
        assert_eq!(bad.count, 0, "a cut is not a bad row");
        let loss = &outer.losses[0];
        assert_eq!(loss.damage.kind, DamageKind::Truncated);
        assert_eq!(loss.rows_kept, good as u64);
        assert_eq!(loss.damage.offset, cut.len() as u64);
        assert!(
            outer.summary().contains("truncated gzip stream"),
            "{}",
            outer.summary()
        );
        let (_, _, fin) = read("cut.csv.gz", cut, true);
        assert!(
            matches!(fin, Err(LoadError::Damaged(l)) if l.damage.kind == DamageKind::Truncated)
        );
        // Flipped bytes: corrupt, every row dropped.
        let mut flipped = gz.clone();
        let n = flipped.len();
        for k in [n / 3, n / 2] {
            flipped[k] ^= 0x10;
        }
        let (_, _, fin) = read("flip.csv.gz", &flipped, false);
        let (keep, outer) = fin.unwrap();
        assert!(!keep);
        assert_eq!(outer.losses[0].damage.kind, DamageKind::Corrupt);
        assert!(outer.summary().contains("dropped"), "{}", outer.summary());
        // A flipped checksum alone: every byte decodes, the trailer refuses it.
        let mut crc = gz.clone();
        crc[n - 6] ^= 1;
        let (good, _, fin) = read("crc.csv.gz", &crc, false);
        let (keep, outer) = fin.unwrap();
        assert_eq!((good, keep), (5000, false));
        assert_eq!(outer.losses[0].rows_lost, Some(5000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_and_binary_lines_are_bad_rows_and_reading_goes_on() {
        let mut text = b"1,1\n".to_vec();
        text.extend(std::iter::repeat_n(b'9', MAX_LINE * 3));
        text.extend(b"\n2,\xff\xfe\n3,3\n");
        let rows: Vec<_> = Rows::from_reader(
            Box::new(std::io::Cursor::new(text)),
            Path::new("x"),
            Delimiter::Comma,
            parse_pair,
        )
        .collect();
        assert_eq!(rows.len(), 4);
        assert!(rows[1].as_ref().unwrap_err().reason.contains("longer than"));
        assert!(rows[2].as_ref().unwrap_err().reason.contains("UTF-8"));
        assert_eq!(rows[3], Ok((3, 3.0)));
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
