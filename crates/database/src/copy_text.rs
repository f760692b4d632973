//! PostgreSQL's `COPY` text format (the default, not CSV) as `COPY ... TO STDOUT` writes it and
//! `COPY ... FROM STDIN` reads it: the codec that lets rows be masked while they stream from one database into
//! another. Pure: bytes in, bytes out.
//!
//! A row ends with a newline and separates its columns with tabs; a column that is exactly `\N` is NULL. Inside a
//! value a backslash escapes: `\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`, `\ddd` (one to three octal digits), `\xhh`
//! (one or two hexadecimal digits), and any other `\c` means `c`. `COPY TO` escapes every backslash, tab, newline,
//! carriage return, backspace, form feed and vertical tab in the data, so in its output a raw newline always ends a
//! row and a raw tab always ends a column; the splitting here relies on that. (PostgreSQL's reader would also take
//! a backslash before a raw tab or newline as escaping it, but `COPY TO` never writes one, and neither does this
//! module.)
//!
//! Masking works on raw rows: a column without a rule is copied byte for byte, never decoded or re-encoded, so a
//! masked copy costs a scan for tabs and newlines plus the work on the masked columns alone.

use std::borrow::Cow;

use crate::masking::{Masker, Rule};

/// The text of a NULL column.
pub const NULL: &[u8] = b"\\N";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyTextError {
    #[error(
        "a row of COPY data has {found} columns where {expected} were expected; the columns copied must be the \
         columns the masking rules were listed for"
    )]
    ColumnCount { expected: usize, found: usize },
    #[error(
        "column {column} (counting from 0) holds bytes that are not UTF-8 text, so its masking rule cannot be \
         applied; the data must be read with client_encoding UTF8 from a database whose encoding is not SQL_ASCII"
    )]
    NotUtf8 { column: usize },
    #[error("the COPY data ended inside a row ({bytes} bytes after the last newline)")]
    Truncated { bytes: usize },
}

/// Splits a stream of `COPY` data, arriving in chunks cut anywhere (inside a row or an escape), into rows.
#[derive(Debug, Default)]
pub struct Lines {
    buffer: Vec<u8>,
    /// Where the next row starts.
    start: usize,
    /// No newline lies between `start` and this, so a long row arriving in small chunks is scanned only once.
    scanned: usize,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Appends a chunk. The rows already taken are dropped first, so the buffer holds the unfinished row and one
    /// chunk at most, not the whole stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete row, without its newline; `None` until more data is pushed.
    pub fn next_row(&mut self) -> Option<&[u8]> {
        let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buffer.len();
            return None;
        };
        let (start, end) = (self.start, self.scanned + offset);
        self.start = end + 1;
        self.scanned = self.start;
        Some(&self.buffer[start..end])
    }

    /// Whether the stream ended where a row did; call it after the last chunk, once `next_row` returns `None`.
    pub fn finish(&self) -> Result<(), CopyTextError> {
        match self.buffer.len() - self.start {
            0 => Ok(()),
            bytes => Err(CopyTextError::Truncated { bytes }),
        }
    }
}

/// A row's columns, still escaped.
pub fn fields(row: &[u8]) -> impl Iterator<Item = &[u8]> {
    row.split(|&b| b == b'\t')
}

/// A column's value, unescaped; `None` for NULL.
pub fn decode(field: &[u8]) -> Option<Vec<u8>> {
    (field != NULL).then(|| unescape(field).into_owned())
}

/// Appends a value escaped as `COPY TO` escapes it.
pub fn encode(value: &[u8], out: &mut Vec<u8>) {
    out.reserve(value.len());
    let mut copied = 0;
    for (i, &byte) in value.iter().enumerate() {
        let letter = match byte {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            0x08 => b'b',
            0x0c => b'f',
            0x0b => b'v',
            _ => continue,
        };
        out.extend_from_slice(&value[copied..i]);
        out.extend_from_slice(&[b'\\', letter]);
        copied = i + 1;
    }
    out.extend_from_slice(&value[copied..]);
}

/// Appends one row of `COPY` data with its columns masked, and its newline, to `out`. `rules` holds one entry
/// per column, `None` for a column copied as it is; `SameAs` rules must already be resolved. NULL stays NULL
/// whatever the rule. On an error nothing is appended.
pub fn mask_row(
    row: &[u8],
    rules: &[Option<&Rule>],
    masker: &Masker,
    out: &mut Vec<u8>,
) -> Result<(), CopyTextError> {
    let before = out.len();
    let written = write_masked_row(row, rules, masker, out);
    if written.is_err() {
        out.truncate(before);
    }
    written
}

fn write_masked_row(
    row: &[u8],
    rules: &[Option<&Rule>],
    masker: &Masker,
    out: &mut Vec<u8>,
) -> Result<(), CopyTextError> {
    // A table without columns writes an empty line per row, which would otherwise read as one empty column.
    if rules.is_empty() && row.is_empty() {
        out.push(b'\n');
        return Ok(());
    }
    let column_count = || CopyTextError::ColumnCount {
        expected: rules.len(),
        found: fields(row).count(),
    };
    let mut columns = fields(row);
    for (column, rule) in rules.iter().enumerate() {
        let field = columns.next().ok_or_else(column_count)?;
        if column > 0 {
            out.push(b'\t');
        }
        match rule {
            Some(rule) if field != NULL => {
                let value = unescape(field);
                let text =
                    std::str::from_utf8(&value).map_err(|_| CopyTextError::NotUtf8 { column })?;
                match masker.mask(rule, text) {
                    Some(masked) => encode(masked.as_bytes(), out),
                    None => out.extend_from_slice(NULL),
                }
            }
            _ => out.extend_from_slice(field),
        }
    }
    if columns.next().is_some() {
        return Err(column_count());
    }
    out.push(b'\n');
    Ok(())
}

/// The value of a non-NULL field; borrowed when it holds no escape, as most fields do.
fn unescape(field: &[u8]) -> Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(offset) = field[i..].iter().position(|&b| b == b'\\') {
        out.extend_from_slice(&field[i..i + offset]);
        let (byte, next) = unescape_one(field, i + offset + 1);
        out.extend(byte);
        i = next;
    }
    out.extend_from_slice(&field[i..]);
    Cow::Owned(out)
}

/// The byte escaped by the backslash just before `at`, and where the field continues after the escape.
fn unescape_one(field: &[u8], at: usize) -> (Option<u8>, usize) {
    // A backslash that ends the field escapes nothing; PostgreSQL drops it too.
    let Some(&c) = field.get(at) else {
        return (None, at);
    };
    let byte = match c {
        b'0'..=b'7' => {
            let (value, next) = digits(field, at, 8, 3);
            // `\777` is 511; PostgreSQL keeps the low eight bits.
            return (Some((value & 0xff) as u8), next);
        }
        b'x' => match digits(field, at + 1, 16, 2) {
            (_, next) if next == at + 1 => b'x',
            (value, next) => return (Some((value & 0xff) as u8), next),
        },
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        other => other,
    };
    (Some(byte), at + 1)
}

/// Up to `max` digits in `radix` from `from`: their value and where they end.
fn digits(field: &[u8], from: usize, radix: u32, max: usize) -> (u32, usize) {
    let mut value = 0;
    let mut end = from;
    while end < from + max
        && let Some(digit) = field.get(end).and_then(|&b| char::from(b).to_digit(radix))
    {
        value = value * radix + digit;
        end += 1;
    }
    (value, end)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check_decode(field: &[u8], expected: Option<&[u8]>) {
        assert_eq!(
            decode(field).as_deref(),
            expected,
            "{}",
            field.escape_ascii()
        );
    }

    fn check_encode(value: &[u8], expected: &[u8]) {
        let mut out = Vec::new();
        encode(value, &mut out);
        assert_eq!(
            out.escape_ascii().to_string(),
            expected.escape_ascii().to_string()
        );
    }

    fn check_mask(row: &[u8], rules: &[Option<Rule>], expected: Result<&[u8], CopyTextError>) {
        let mut out = b"earlier row\n".to_vec();
        let rules: Vec<Option<&Rule>> = rules.iter().map(Option::as_ref).collect();
        let result = mask_row(row, &rules, &Masker::new("k"), &mut out);
        let written = out
            .strip_prefix(b"earlier row\n".as_slice())
            .unwrap_or_default();
        match expected {
            Ok(expected) => assert_eq!(
                (result, written.escape_ascii().to_string()),
                (Ok(()), expected.escape_ascii().to_string())
            ),
            Err(error) => assert_eq!(
                (result, written),
                (Err(error), &b""[..]),
                "nothing is appended"
            ),
        }
    }

    #[test]
    fn decodes_every_escape() {
        check_decode(b"plain", Some(b"plain"));
        check_decode(b"", Some(b""));
        check_decode(b"\\N", None);
        check_decode(b"\\\\N", Some(b"\\N"));
        check_decode(b"a\\Nb", Some(b"aNb"));
        check_decode(b"\\N\\N", Some(b"NN"));
        check_decode(b"\\\\", Some(b"\\"));
        check_decode(b"\\t\\n\\r\\b\\f\\v", Some(b"\t\n\r\x08\x0c\x0b"));
        check_decode(b"\\101", Some(b"A"));
        check_decode(b"\\0", Some(b"\0"));
        check_decode(b"\\12x", Some(b"\nx"));
        check_decode(b"\\1014", Some(b"A4"));
        check_decode(b"\\777", Some(b"\xff"));
        check_decode(b"\\8", Some(b"8"));
        check_decode(b"\\x41", Some(b"A"));
        check_decode(b"\\xFf", Some(b"\xff"));
        check_decode(b"\\x4", Some(b"\x04"));
        check_decode(b"\\x4g", Some(b"\x04g"));
        check_decode(b"\\x414", Some(b"A4"));
        check_decode(b"\\xg", Some(b"xg"));
        check_decode(b"\\x", Some(b"x"));
        check_decode(b"\\q\\.", Some(b"q."));
        check_decode(b"end\\", Some(b"end"));
        check_decode("é\\tü".as_bytes(), Some("é\tü".as_bytes()));
    }

    #[test]
    fn encodes_as_copy_to_does() {
        check_encode(b"plain", b"plain");
        check_encode(b"", b"");
        check_encode(b"a\tb\nc\rd\\e", b"a\\tb\\nc\\rd\\\\e");
        check_encode(b"\x08\x0c\x0b", b"\\b\\f\\v");
        check_encode(b"\\N", b"\\\\N");
        check_encode(b"\x01\x7f\0", b"\x01\x7f\0");
        check_encode("é".as_bytes(), "é".as_bytes());
    }

    #[test]
    fn splits_fields_on_raw_tabs() {
        let split = |row: &[u8]| fields(row).map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(split(b"a\tb\t\\N"), [&b"a"[..], b"b", b"\\N"]);
        assert_eq!(split(b"a\\tb"), [&b"a\\tb"[..]]);
        assert_eq!(split(b""), [&b""[..]]);
        assert_eq!(split(b"\t"), [&b""[..], b""]);
    }

    #[test]
    fn masks_only_the_columns_with_rules() {
        let fixed = |text: &str| Some(Rule::Fixed(text.to_owned()));
        check_mask(b"1\tsecret", &[None, fixed("x")], Ok(b"1\tx\n"));
        check_mask(
            b"\\N\t\\N",
            &[fixed("x"), Some(Rule::Hash)],
            Ok(b"\\N\t\\N\n"),
        );
        check_mask(b"v", &[Some(Rule::Null)], Ok(b"\\N\n"));
        check_mask(b"v", &[fixed("a\tb\\")], Ok(b"a\\tb\\\\\n"));
        check_mask(b"v", &[fixed("\\N")], Ok(b"\\\\N\n"));
        // Unmasked columns are not re-encoded: `\x41` stays as PostgreSQL wrote it, raw bytes stay raw.
        check_mask(
            b"\\x41\t\\101\t\xff",
            &[None, None, None],
            Ok(b"\\x41\t\\101\t\xff\n"),
        );
        check_mask(b"", &[], Ok(b"\n"));
        check_mask(b"", &[fixed("x")], Ok(b"x\n"));
        // The value is unescaped before it is masked.
        let hash = Masker::new("k")
            .mask(&Rule::Hash, "anna\t")
            .unwrap_or_default();
        check_mask(
            b"anna\\t",
            &[Some(Rule::Hash)],
            Ok(format!("{hash}\n").as_bytes()),
        );
    }

    #[test]
    fn refuses_rows_it_cannot_mask() {
        let count = |expected, found| Err(CopyTextError::ColumnCount { expected, found });
        check_mask(b"a\tb", &[None], count(1, 2));
        check_mask(b"a", &[None, None], count(2, 1));
        check_mask(b"a", &[], count(0, 1));
        let not_utf8 = |column| Err(CopyTextError::NotUtf8 { column });
        check_mask(b"\xff\t\\xff", &[None, Some(Rule::Hash)], not_utf8(1));
        check_mask(
            b"ok\t\xc3",
            &[None, Some(Rule::Fixed("x".to_owned()))],
            not_utf8(1),
        );
    }

    #[test]
    fn a_stream_must_end_with_a_row() {
        let mut lines = Lines::new();
        lines.push(b"a\tb\nc");
        assert_eq!(lines.next_row(), Some(&b"a\tb"[..]));
        assert_eq!(lines.next_row(), None);
        assert_eq!(lines.finish(), Err(CopyTextError::Truncated { bytes: 1 }));
        lines.push(b"\n");
        assert_eq!(lines.next_row(), Some(&b"c"[..]));
        assert_eq!(lines.finish(), Ok(()));
    }

    type Table = Vec<Vec<Option<Vec<u8>>>>;

    fn table() -> impl Strategy<Value = Table> {
        (1usize..5).prop_flat_map(|width| {
            let field = prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..12));
            prop::collection::vec(prop::collection::vec(field, width), 0..20)
        })
    }

    fn encode_table(table: &Table) -> Vec<u8> {
        let mut stream = Vec::new();
        for row in table {
            for (i, field) in row.iter().enumerate() {
                if i > 0 {
                    stream.push(b'\t');
                }
                match field {
                    Some(value) => encode(value, &mut stream),
                    None => stream.extend_from_slice(NULL),
                }
            }
            stream.push(b'\n');
        }
        stream
    }

    proptest! {
        #[test]
        fn decode_undoes_encode(value in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut encoded = Vec::new();
            encode(&value, &mut encoded);
            prop_assert!(!encoded.contains(&b'\t') && !encoded.contains(&b'\n'));
            prop_assert_eq!(decode(&encoded), Some(value));
        }

        #[test]
        fn rows_do_not_depend_on_where_chunks_are_cut(
            table in table(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let stream = encode_table(&table);
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut lines = Lines::new();
            let mut rows = Vec::new();
            let mut from = 0;
            for to in cuts.into_iter().chain([stream.len()]) {
                lines.push(&stream[from..to]);
                from = to;
                while let Some(row) = lines.next_row() {
                    rows.push(fields(row).map(decode).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(lines.finish(), Ok(()));
            prop_assert_eq!(rows, table);
        }

        #[test]
        fn masking_touches_only_masked_values(
            row in prop::collection::vec(prop::option::weighted(0.8, ".{0,12}"), 1..6),
            masked in prop::collection::vec(any::<bool>(), 6),
        ) {
            let masker = Masker::new("k");
            let table = vec![row.iter().map(|field| field.clone().map(String::into_bytes)).collect()];
            let mut line = encode_table(&table);
            line.pop();
            let rules: Vec<Option<&Rule>> =
                (0..row.len()).map(|i| masked[i].then_some(&Rule::Email)).collect();
            let mut out = Vec::new();
            prop_assert_eq!(mask_row(&line, &rules, &masker, &mut out), Ok(()));
            prop_assert_eq!(out.pop(), Some(b'\n'));
            let before: Vec<&[u8]> = fields(&line).collect();
            let after: Vec<&[u8]> = fields(&out).collect();
            prop_assert_eq!(after.len(), row.len());
            for (i, value) in row.iter().enumerate() {
                match (&rules[i], value) {
                    (Some(rule), Some(value)) => prop_assert_eq!(
                        decode(after[i]),
                        masker.mask(rule, value).map(String::into_bytes)
                    ),
                    _ => prop_assert_eq!(after[i], before[i]),
                }
            }
        }
    }
}
