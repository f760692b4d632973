//! `mariadb-dump`'s output, masked on its way into `mariadb`: the MySQL counterpart of [`crate::copy_text`].
//! Pure: bytes in, bytes out.
//!
//! The dump is SQL text, a statement per line but for data: ``INSERT INTO `t` (`id`, `email`) VALUES (1,'a@b.c'),``
//! followed by a line per row, ``(2,NULL),`` … ``(9,'z');`` (MariaDB's `--extended-insert` puts each row of a
//! statement on a line of its own). `--complete-insert` writes the column list, `--hex-blob` binary values as
//! `0x...`. Strings are single-quoted with `mysql_real_escape_string`'s backslash escapes, so a raw newline is
//! always between rows or statements.
//!
//! Only the INSERT lines of tables with rules are parsed. Every other line, and every value without a rule, is
//! copied byte for byte, never decoded or re-encoded, so a masked copy costs a scan for newlines plus a scan of
//! the masked tables' lines, and a masked column's source bytes can reach the output only through its rule. An
//! INSERT of a table with rules that cannot be read as mariadb-dump writes one is an error, never passed through.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::masking::{Masker, Rule};

/// Table name (as in the dump, without quotes) → column → rule, `SameAs` already resolved by the caller.
pub type DumpRules = BTreeMap<String, BTreeMap<String, Rule>>;

/// What made a dump impossible to mask. Messages name the dump's line, the table and the column, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    #[error("line {0} of the dump: a table name not in backquotes; do not pass --skip-quote-names")]
    TableName(u64),
    #[error("{0}: an INSERT without its column list; dump with --complete-insert")]
    NoColumnList(Place),
    #[error("{0}: a masking rule names this column, which the INSERT does not list")]
    UnknownColumn(Place),
    #[error("{at}: a row has {found} values where {expected} columns are listed")]
    ValueCount {
        at: Place,
        expected: usize,
        found: usize,
    },
    #[error("{at}: the INSERT is not as mariadb-dump writes it: expected {expected}")]
    Syntax { at: Place, expected: &'static str },
    #[error("{0}: a value is not NULL, a number, a string or a hex literal; it cannot be masked")]
    Value(Place),
    #[error(
        "{0}: a value is not UTF-8 text, so its masking rule cannot be applied; dump with \
         --default-character-set=utf8mb4"
    )]
    NotUtf8(Place),
    #[error("the dump ended inside line {line} ({bytes} bytes after the last newline)")]
    Truncated { line: u64, bytes: usize },
}

/// Where in the dump an error lies: `line 7 of the dump, `customers`.`email``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub line: u64,
    pub table: String,
    pub column: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} of the dump, `{}`", self.line, self.table)?;
        self.column
            .as_ref()
            .map_or(Ok(()), |column| write!(f, ".`{column}`"))
    }
}

/// Masks a dump arriving in chunks cut anywhere. After an error the rest of the stream must not be fed in.
pub struct DumpMasker<'a> {
    masker: &'a Masker,
    rules: &'a DumpRules,
    /// The unfinished line that the last chunk ended in.
    partial: Vec<u8>,
    /// Lines read so far; the one being read is `line + 1`.
    line: u64,
    masked: BTreeMap<String, u64>,
    /// An INSERT of a table with rules whose rows go on on the next line: its table and its columns' rules.
    continued: Option<(String, Vec<String>)>,
}

impl<'a> DumpMasker<'a> {
    pub fn new(masker: &'a Masker, rules: &'a DumpRules) -> Self {
        let masked = rules.keys().map(|table| (table.clone(), 0)).collect();
        DumpMasker {
            masker,
            rules,
            partial: Vec::new(),
            line: 0,
            masked,
            continued: None,
        }
    }

    /// Feeds a chunk of the dump; appends every complete line (masked where needed) to `out`. A line that fails
    /// is not appended at all.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), DumpError> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(end) = newline(rest) else {
                self.partial.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..=end]);
            let masked = self.mask_line(&line, out);
            line.clear();
            self.partial = line;
            masked?;
            rest = &rest[end + 1..];
        }
        // Lines that lie whole in the chunk are read where they are, never copied into `partial`.
        while let Some(end) = newline(rest) {
            self.mask_line(&rest[..=end], out)?;
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The end of the stream, which must end with a line. Returns the rows masked in each table with rules, 0
    /// for a table the dump held no rows of. Writes nothing: `out` is there so that callers treat the end like
    /// any other chunk.
    pub fn finish(&mut self, _out: &mut Vec<u8>) -> Result<BTreeMap<String, u64>, DumpError> {
        let (line, bytes) = (self.line + 1, self.partial.len());
        match bytes {
            0 if self.continued.is_none() => Ok(std::mem::take(&mut self.masked)),
            _ => Err(DumpError::Truncated { line, bytes }),
        }
    }

    /// One line, with its newline.
    fn mask_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), DumpError> {
        self.line += 1;
        let text = &line[..line.len() - 1];
        if let Some((table, names)) = self.continued.take() {
            let columns = &self.rules[&table];
            let rules: Vec<Option<&Rule>> = names
                .iter()
                .map(|name| columns.get(name.as_str()))
                .collect();
            let mut statement = Statement {
                text,
                at: 0,
                line: self.line,
                table: &table,
            };
            let before = out.len();
            let (rows, continues) = mask_rows(&mut statement, &names, &rules, self.masker, out)
                .inspect_err(|_| out.truncate(before))?;
            out.push(b'\n');
            if let Some(count) = self.masked.get_mut(&table) {
                *count += rows;
            }
            if continues {
                self.continued = Some((table, names));
            }
            return Ok(());
        }
        let Some(at) = INSERT_HEADS
            .iter()
            .find(|head| text.starts_with(head))
            .map(|head| head.len())
        else {
            out.extend_from_slice(line);
            return Ok(());
        };
        let table_name = || DumpError::TableName(self.line);
        let (mut table, mut at) = identifier(text, at).ok_or_else(table_name)?;
        // mariadb-dump does not qualify names, but a qualified one must not slip past its table's rules.
        if text.get(at) == Some(&b'.') {
            (table, at) = identifier(text, at + 1).ok_or_else(table_name)?;
        }
        let rules = self.rules;
        let Some(columns) = rules.get(&*table) else {
            out.extend_from_slice(line);
            return Ok(());
        };
        let mut statement = Statement {
            text,
            at,
            line: self.line,
            table: &table,
        };
        let before = out.len();
        let (rows, continued) = mask_insert(&mut statement, columns, self.masker, out)
            .inspect_err(|_| out.truncate(before))?;
        out.push(b'\n');
        if let Some(count) = self.masked.get_mut(&*table) {
            *count += rows;
        }
        self.continued = continued.map(|names| (table.into_owned(), names));
        Ok(())
    }
}

/// How mariadb-dump starts a line of data (`--insert-ignore`, `--replace` and `--delayed-insert` included).
const INSERT_HEADS: [&[u8]; 4] = [
    b"INSERT INTO ",
    b"INSERT IGNORE INTO ",
    b"INSERT DELAYED INTO ",
    b"REPLACE INTO ",
];

fn newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// An INSERT of a table with rules, being read: its text without the newline, where reading is, and the place
/// that errors name.
struct Statement<'l> {
    text: &'l [u8],
    at: usize,
    line: u64,
    table: &'l str,
}

/// Appends the first line of an INSERT of a table with rules, read from just after the table's name, with its
/// masked columns masked and without its newline; returns how many rows it held, and its columns when its rows go
/// on on the next line.
fn mask_insert(
    statement: &mut Statement,
    columns: &BTreeMap<String, Rule>,
    masker: &Masker,
    out: &mut Vec<u8>,
) -> Result<(u64, Option<Vec<String>>), DumpError> {
    if !statement.eat(b" (") {
        return Err(DumpError::NoColumnList(statement.place(None)));
    }
    let mut names = Vec::new();
    loop {
        let (name, next) = identifier(statement.text, statement.at)
            .ok_or_else(|| statement.syntax("a backquoted column name"))?;
        names.push(name);
        statement.at = next;
        if !statement.eat(b", ") {
            break;
        }
    }
    if let Some(column) = columns
        .keys()
        .find(|column| !names.iter().any(|name| name == *column))
    {
        return Err(DumpError::UnknownColumn(statement.place(Some(column))));
    }
    let rules: Vec<Option<&Rule>> = names.iter().map(|name| columns.get(&**name)).collect();
    statement.expect(b") VALUES ", "`) VALUES ` after the column list")?;
    let names: Vec<String> = names.into_iter().map(Cow::into_owned).collect();
    let (rows, continues) = mask_rows(statement, &names, &rules, masker, out)?;
    Ok((rows, continues.then_some(names)))
}

/// Appends the rows of an INSERT's line, from where `statement` is, masked; returns how many there were and whether
/// the statement goes on on the next line (the line ends with `,` after a row, not `;`).
fn mask_rows(
    statement: &mut Statement,
    names: &[String],
    rules: &[Option<&Rule>],
    masker: &Masker,
    out: &mut Vec<u8>,
) -> Result<(u64, bool), DumpError> {
    let copied_from = statement.at;
    let (mut copied, mut rows) = (copied_from, 0);
    out.extend_from_slice(&statement.text[..copied_from]);
    loop {
        statement.expect(b"(", "`(` before a row")?;
        let mut found = 0;
        loop {
            let (start, end) = statement.value()?;
            let value = &statement.text[start..end];
            if let Some(Some(rule)) = rules.get(found)
                && value != b"NULL"
            {
                let place = || statement.place(Some(&names[found]));
                let bytes = decode(value).ok_or_else(|| DumpError::Value(place()))?;
                let text = std::str::from_utf8(&bytes).map_err(|_| DumpError::NotUtf8(place()))?;
                out.extend_from_slice(&statement.text[copied..start]);
                match masker.mask(rule, text) {
                    Some(masked) => write_quoted(masked.as_bytes(), out),
                    None => out.extend_from_slice(b"NULL"),
                }
                copied = end;
            }
            found += 1;
            if !statement.eat(b",") {
                break;
            }
        }
        statement.expect(b")", "`,` or `)` after a value")?;
        if found != rules.len() {
            let (at, expected) = (statement.place(None), rules.len());
            return Err(DumpError::ValueCount {
                at,
                expected,
                found,
            });
        }
        rows += 1;
        if !statement.eat(b",") {
            break;
        }
        if statement.at == statement.text.len() {
            out.extend_from_slice(&statement.text[copied..]);
            return Ok((rows, true));
        }
    }
    statement.expect(b";", "`,` or `;` after a row")?;
    if statement.at != statement.text.len() {
        return Err(statement.syntax("the end of the line after `;`"));
    }
    out.extend_from_slice(&statement.text[copied..]);
    Ok((rows, false))
}

impl Statement<'_> {
    fn eat(&mut self, token: &[u8]) -> bool {
        let found = self.text[self.at..].starts_with(token);
        self.at += if found { token.len() } else { 0 };
        found
    }

    fn expect(&mut self, token: &[u8], expected: &'static str) -> Result<(), DumpError> {
        let found = self.eat(token);
        found.then_some(()).ok_or_else(|| self.syntax(expected))
    }

    fn syntax(&self, expected: &'static str) -> DumpError {
        DumpError::Syntax {
            at: self.place(None),
            expected,
        }
    }

    /// Reads past the value that starts here: a quoted string (after `_binary `, as MySQL's mysqldump writes
    /// binary strings without `--hex-blob`), or anything else up to the next `,` or `)`. Returns where it lies.
    fn value(&mut self) -> Result<(usize, usize), DumpError> {
        let start = self.at;
        let rest = &self.text[start..];
        let quote = start + if rest.starts_with(b"_binary '") { 8 } else { 0 };
        if self.text.get(quote) == Some(&b'\'') {
            let end = string_end(self.text, quote + 1);
            self.at = end.ok_or_else(|| self.syntax("the closing quote of a string"))?;
        } else {
            let length = rest.iter().position(|&b| b == b',' || b == b')');
            self.at = start + length.unwrap_or(rest.len());
            if self.at == start || rest[..self.at - start].contains(&b'\'') {
                return Err(self.syntax("a value"));
            }
        }
        Ok((start, self.at))
    }

    fn place(&self, column: Option<&str>) -> Place {
        Place {
            line: self.line,
            table: self.table.to_owned(),
            column: column.map(str::to_owned),
        }
    }
}

/// The bytes a value other than NULL stands for: a string's text unescaped, a hex literal's bytes, a number's
/// digits.
fn decode(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let string = value.strip_prefix(b"_binary ").unwrap_or(value);
    if let Some(quoted) = string.strip_prefix(b"'") {
        return Some(unescape(quoted.strip_suffix(b"'")?));
    }
    match value.strip_prefix(b"0x") {
        Some(digits) => unhex(digits).map(Cow::Owned),
        None => is_number(value).then_some(Cow::Borrowed(value)),
    }
}

/// A backquoted name starting at `at`: the name, doubled backquotes undone, and where it ends.
fn identifier(text: &[u8], at: usize) -> Option<(Cow<'_, str>, usize)> {
    if text.get(at) != Some(&b'`') {
        return None;
    }
    let mut end = at + 1;
    loop {
        end += text.get(end..)?.iter().position(|&b| b == b'`')?;
        if text.get(end + 1) != Some(&b'`') {
            break;
        }
        end += 2;
    }
    let name = std::str::from_utf8(&text[at + 1..end]).ok()?;
    let name = if name.contains("``") {
        Cow::Owned(name.replace("``", "`"))
    } else {
        Cow::Borrowed(name)
    };
    Some((name, end + 1))
}

/// Where a single-quoted string whose text starts at `from` ends: just after its closing quote.
fn string_end(text: &[u8], mut from: usize) -> Option<usize> {
    loop {
        from += text
            .get(from..)?
            .iter()
            .position(|&b| b == b'\'' || b == b'\\')?;
        // A value is followed by `,` or `)`, never by a quote, so two quotes are always one escaped quote.
        if text[from] == b'\\' || text.get(from + 1) == Some(&b'\'') {
            from += 2;
        } else {
            return Some(from + 1);
        }
    }
}

/// The bytes of a quoted string's text, as the server reads it; borrowed when it holds no escape.
fn unescape(text: &[u8]) -> Cow<'_, [u8]> {
    let special = |b: &u8| *b == b'\\' || *b == b'\'';
    if !text.iter().any(special) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(offset) = text[i..].iter().position(special) {
        let at = i + offset;
        out.extend_from_slice(&text[i..at]);
        let Some(&escaped) = text.get(at + 1) else {
            break;
        };
        match (text[at], escaped) {
            (b'\'', _) => out.push(b'\''),
            (_, b'0') => out.push(0),
            (_, b'b') => out.push(0x08),
            (_, b'n') => out.push(b'\n'),
            (_, b'r') => out.push(b'\r'),
            (_, b't') => out.push(b'\t'),
            (_, b'Z') => out.push(0x1a),
            // `\%` and `\_` keep their backslash, so that they stay literal in a LIKE pattern.
            (_, b'%' | b'_') => out.extend_from_slice(&[b'\\', escaped]),
            (_, other) => out.push(other),
        }
        i = at + 2;
    }
    out.extend_from_slice(text.get(i..).unwrap_or_default());
    Cow::Owned(out)
}

/// Appends a value as a single-quoted string escaped as mariadb-dump escapes it.
fn write_quoted(value: &[u8], out: &mut Vec<u8>) {
    out.reserve(value.len() + 2);
    out.push(b'\'');
    let mut copied = 0;
    for (i, &byte) in value.iter().enumerate() {
        let letter = match byte {
            0 => b'0',
            b'\n' => b'n',
            b'\r' => b'r',
            0x1a => b'Z',
            b'\\' | b'\'' | b'"' => byte,
            _ => continue,
        };
        out.extend_from_slice(&value[copied..i]);
        out.extend_from_slice(&[b'\\', letter]);
        copied = i + 1;
    }
    out.extend_from_slice(&value[copied..]);
    out.push(b'\'');
}

/// The bytes of `0x...`'s digits, two per byte as `--hex-blob` writes them.
fn unhex(digits: &[u8]) -> Option<Vec<u8>> {
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    digits
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// Whether a bare value is a number as the server writes one: `-1`, `3.14`, `1e+20`.
fn is_number(token: &[u8]) -> bool {
    token.iter().any(u8::is_ascii_digit)
        && token
            .iter()
            .all(|&b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CUSTOMERS: &str = "INSERT INTO `customers` (`id`, `email`, `name`) VALUES ";

    fn rules(entries: &[(&str, &str, Rule)]) -> DumpRules {
        let mut rules = DumpRules::new();
        for (table, column, rule) in entries {
            let columns = rules.entry((*table).to_owned()).or_default();
            columns.insert((*column).to_owned(), rule.clone());
        }
        rules
    }

    fn fixed(text: &str) -> Rule {
        Rule::Fixed(text.to_owned())
    }

    fn masked(rule: Rule, value: &str) -> String {
        Masker::new("secret").mask(&rule, value).unwrap_or_default()
    }

    /// The dump fed in chunks of `size` bytes: what was written, and how it ended.
    fn mask(
        dump: &[u8],
        rules: &DumpRules,
        size: usize,
    ) -> (Vec<u8>, Result<BTreeMap<String, u64>, DumpError>) {
        let masker = Masker::new("secret");
        let mut masking = DumpMasker::new(&masker, rules);
        let mut out = Vec::new();
        let pushed = dump
            .chunks(size)
            .try_for_each(|chunk| masking.push(chunk, &mut out));
        let result = pushed.and_then(|()| masking.finish(&mut out));
        (out, result)
    }

    fn check(dump: &[u8], rules: &DumpRules, expected: &[u8]) {
        let (out, result) = mask(dump, rules, usize::MAX);
        assert_eq!(
            (out.escape_ascii().to_string(), result.map(|_| ())),
            (expected.escape_ascii().to_string(), Ok(()))
        );
    }

    /// `line` as the dump's second line must fail with `expected`, write nothing of itself, and say nothing of
    /// the value `leak@x.org` that it holds.
    fn check_error(line: &[u8], rules: &DumpRules, expected: DumpError) {
        let dump = [b"-- first line\n", line, b"\n"].concat();
        let (out, result) = mask(&dump, rules, usize::MAX);
        assert_eq!(
            (result, &out[..]),
            (Err(expected.clone()), &b"-- first line\n"[..])
        );
        let message = expected.to_string();
        assert!(
            message.contains("line 2") && !message.contains("leak"),
            "{message}"
        );
    }

    fn place(column: Option<&str>) -> Place {
        let table = "customers";
        Place {
            line: 2,
            table: table.to_owned(),
            column: column.map(str::to_owned),
        }
    }

    #[test]
    fn masks_the_columns_with_rules() {
        let rules = rules(&[
            ("customers", "email", Rule::Email),
            ("customers", "name", Rule::Hash),
        ]);
        let dump = format!("{CUSTOMERS}(1,'a@b.c','Ann'),(2,'x\\'y',NULL);\n");
        let (email, name) = (masked(Rule::Email, "a@b.c"), masked(Rule::Hash, "Ann"));
        let other = masked(Rule::Email, "x'y");
        assert!(email.ends_with("@example.com") && name.len() == 32 && email != other);
        let expected = format!("{CUSTOMERS}(1,'{email}','{name}'),(2,'{other}',NULL);\n");
        check(dump.as_bytes(), &rules, expected.as_bytes());
        let (_, counts) = mask(dump.repeat(2).as_bytes(), &rules, usize::MAX);
        assert_eq!(counts, Ok(BTreeMap::from([("customers".to_owned(), 4)])));

        // NULL stays NULL whatever the rule; the `null` rule turns a value into NULL.
        let rules = self::rules(&[
            ("customers", "email", fixed("x")),
            ("customers", "name", Rule::Null),
        ]);
        let dump = format!("{CUSTOMERS}(1,NULL,'Ann'),(2,'a',NULL);\n");
        let expected = format!("{CUSTOMERS}(1,NULL,NULL),(2,'x',NULL);\n");
        check(dump.as_bytes(), &rules, expected.as_bytes());
    }

    #[test]
    fn rows_on_lines_of_their_own_are_masked_as_mariadb_dump_writes_them() {
        let rules = rules(&[("customers", "email", Rule::Email)]);
        // MariaDB's mariadb-dump ends a line after each row of an extended INSERT.
        let dump = format!(
            "{CUSTOMERS}(1,'a@b.c','Ann'),\n(2,'c@d.e','Bob'),\n(3,NULL,'Cy');\nINSERT INTO `other` (`x`) VALUES (1),\n('c@d.e');\n"
        );
        let (first, second) = (masked(Rule::Email, "a@b.c"), masked(Rule::Email, "c@d.e"));
        let expected = format!(
            "{CUSTOMERS}(1,'{first}','Ann'),\n(2,'{second}','Bob'),\n(3,NULL,'Cy');\nINSERT INTO `other` (`x`) VALUES (1),\n('c@d.e');\n"
        );
        check(dump.as_bytes(), &rules, expected.as_bytes());
        for size in [1, 5, 64] {
            assert_eq!(mask(dump.as_bytes(), &rules, size).0, expected.as_bytes());
        }
        let (_, counts) = mask(dump.as_bytes(), &rules, usize::MAX);
        assert_eq!(counts, Ok(BTreeMap::from([("customers".to_owned(), 3)])));
        // A row line of a masked table is read as one, never passed through: a broken one is an error.
        let broken = format!("{CUSTOMERS}(1,'a@b.c','Ann'),\n(2,'leak@x.org');\n");
        let (out, result) = mask(broken.as_bytes(), &rules, usize::MAX);
        assert!(
            matches!(result, Err(DumpError::ValueCount { .. })),
            "{result:?}"
        );
        assert!(!String::from_utf8_lossy(&out).contains("leak"));
        // A dump that ends inside a statement is cut short.
        let cut = format!("{CUSTOMERS}(1,'a@b.c','Ann'),\n");
        assert!(matches!(
            mask(cut.as_bytes(), &rules, usize::MAX).1,
            Err(DumpError::Truncated { .. })
        ));
    }

    #[test]
    fn nothing_in_the_dump_turns_the_masking_off() {
        // A table's name may hold newlines, and mariadb-dump writes it as it is: a line such a name makes (a
        // `DELIMITER`, a comment opened) changes nothing for the rows of a table with rules after it.
        let rules = rules(&[("customers", "email", Rule::Email)]);
        let dump = format!(
            "CREATE TABLE `aa\nDELIMITER ;;\n/*bb` (id INT);\n{CUSTOMERS}(1,'a@b.c','Ann');\n"
        );
        let email = masked(Rule::Email, "a@b.c");
        let expected = format!(
            "CREATE TABLE `aa\nDELIMITER ;;\n/*bb` (id INT);\n{CUSTOMERS}(1,'{email}','Ann');\n"
        );
        check(dump.as_bytes(), &rules, expected.as_bytes());
    }

    #[test]
    fn the_same_value_masks_alike_in_every_table() {
        let rules = rules(&[
            ("customers", "email", Rule::Email),
            ("orders", "customer`email", Rule::Email),
        ]);
        let dump = format!(
            "{CUSTOMERS}(1,'o\\'hara@corp.example','Ann');\n\
             INSERT INTO `orders` (`id`, `customer``email`) VALUES (7,'o''hara@corp.example');\n"
        );
        let email = masked(Rule::Email, "o'hara@corp.example");
        let expected = format!(
            "{CUSTOMERS}(1,'{email}','Ann');\nINSERT INTO `orders` (`id`, `customer``email`) VALUES (7,'{email}');\n"
        );
        check(dump.as_bytes(), &rules, expected.as_bytes());
    }

    #[test]
    fn values_are_unescaped_before_masking_and_escaped_after() {
        let hash = rules(&[("customers", "name", Rule::Hash)]);
        let dump = format!(
            "{CUSTOMERS}(1,NULL,'it\\'s \\\\ a\\nb\\Z \\\"😀\\\" \\0\\b\\t\\%\\_ ''x''');\n"
        );
        let value = "it's \\ a\nb\x1a \"😀\" \0\x08\t\\%\\_ 'x'";
        let expected = format!("{CUSTOMERS}(1,NULL,'{}');\n", masked(Rule::Hash, value));
        check(dump.as_bytes(), &hash, expected.as_bytes());

        let fixed = rules(&[("customers", "name", fixed("it's \"q\" \\ \n\r\0\x1a 😀"))]);
        let dump = format!("{CUSTOMERS}(1,NULL,'Ann');\n");
        let expected = format!("{CUSTOMERS}(1,NULL,'it\\'s \\\"q\\\" \\\\ \\n\\r\\0\\Z 😀');\n");
        check(dump.as_bytes(), &fixed, expected.as_bytes());
    }

    #[test]
    fn hex_numbers_and_binary_strings_are_masked_as_their_bytes() {
        let rules = rules(&[("t", "v", Rule::Hash)]);
        for (value, text) in [
            ("0x616263", "abc"),
            ("_binary 'abc'", "abc"),
            ("-1.5e+20", "-1.5e+20"),
            ("''", ""),
        ] {
            let dump = format!("INSERT INTO `t` (`v`) VALUES ({value});\n");
            let expected = format!(
                "INSERT INTO `t` (`v`) VALUES ('{}');\n",
                masked(Rule::Hash, text)
            );
            check(dump.as_bytes(), &rules, expected.as_bytes());
        }
    }

    #[test]
    fn unmasked_values_keep_their_exact_bytes() {
        let rules = rules(&[("files", "note", fixed("n"))]);
        let head = b"INSERT INTO `files` (`id`, `data`, `text`, `ratio`, `big`, `price`, `raw`, `note`) VALUES ";
        let row = b"(-1,0x00FF1A,'a\\nb\\'\xff',3.14,1e+20,'1.50',_binary 'a\\'b',";
        let dump = [&head[..], row, b"'leak'),", row, b"NULL);\n"].concat();
        let expected = [&head[..], row, b"'n'),", row, b"NULL);\n"].concat();
        check(&dump, &rules, &expected);
    }

    #[test]
    fn other_lines_and_tables_pass_byte_for_byte() {
        let dump = b"-- MariaDB dump 10.19\n/*!40101 SET NAMES utf8mb4 */;\n\nCREATE TABLE `customers` (\n  \
            `email` varchar(255) DEFAULT NULL\n) ENGINE=InnoDB;\nLOCK TABLES `customers` WRITE;\n\
            INSERT INTO `customers_archive` VALUES (1,'a@b.c',\xff,unparsed;\n\
            INSERT INTO `logs` (`line`) VALUES ('\\'';\nUNLOCK TABLES;\n";
        check(dump, &rules(&[("customers", "email", Rule::Email)]), dump);
    }

    #[test]
    fn chunks_may_be_cut_anywhere() {
        let rules = rules(&[
            ("customers", "email", Rule::Email),
            ("customers", "name", Rule::Null),
        ]);
        let dump = format!(
            "-- dump\n{CUSTOMERS}(1,'a@b.c','Ann'),(2,'x\\'y\\n',NULL);\nINSERT INTO `logs` VALUES (1);\n\
             {CUSTOMERS}(3,'😀','\\\\');\n"
        );
        let whole = mask(dump.as_bytes(), &rules, usize::MAX);
        assert!(whole.1.is_ok() && !whole.0.windows(5).any(|w| w == b"a@b.c"));
        for size in [1, 2, 3, 7, 64] {
            assert_eq!(
                mask(dump.as_bytes(), &rules, size),
                whole,
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_mask() {
        let email = rules(&[("customers", "email", Rule::Email)]);
        let row = |row: &[u8]| [CUSTOMERS.as_bytes(), b"(0,'a','b'),", row, b";"].concat();
        let no_list = b"INSERT INTO `customers` VALUES (1,'leak@x.org','Ann');";
        check_error(no_list, &email, DumpError::NoColumnList(place(None)));
        let unquoted = b"INSERT INTO customers (`email`) VALUES ('leak@x.org');";
        check_error(unquoted, &email, DumpError::TableName(2));
        let phone = rules(&[("customers", "phone", Rule::Phone)]);
        let unknown = DumpError::UnknownColumn(place(Some("phone")));
        check_error(&row(b"(1,'leak@x.org','Ann')"), &phone, unknown);
        let count = |found| DumpError::ValueCount {
            at: place(None),
            expected: 3,
            found,
        };
        check_error(&row(b"(1,'leak@x.org')"), &email, count(2));
        check_error(&row(b"(1,'leak@x.org','Ann',4)"), &email, count(4));
        let expected = "the closing quote of a string";
        let unterminated = DumpError::Syntax {
            at: place(None),
            expected,
        };
        check_error(&row(b"(1,'leak@x.org\\',NULL)"), &email, unterminated);
        let utf8 = DumpError::NotUtf8(place(Some("email")));
        check_error(&row(b"(1,'leak@x.org\xff',NULL)"), &email, utf8.clone());
        check_error(&row(b"(1,0x6C65616BFF,NULL)"), &email, utf8);
        let value = DumpError::Value(place(Some("email")));
        check_error(&row(b"(1,leak_at_x,NULL)"), &email, value);
    }

    #[test]
    fn the_dump_must_end_with_a_line() {
        let (out, result) = mask(b"-- first\nINSERT", &DumpRules::new(), 4);
        assert_eq!(
            (&out[..], result),
            (
                &b"-- first\n"[..],
                Err(DumpError::Truncated { line: 2, bytes: 6 })
            )
        );
        assert_eq!(
            mask(b"", &DumpRules::new(), 1),
            (Vec::new(), Ok(BTreeMap::new()))
        );
    }

    proptest! {
        #[test]
        fn unescape_undoes_write_quoted(value in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut quoted = Vec::new();
            write_quoted(&value, &mut quoted);
            prop_assert!(!quoted.contains(&b'\n'));
            prop_assert_eq!(string_end(&quoted, 1), Some(quoted.len()));
            prop_assert_eq!(unescape(&quoted[1..quoted.len() - 1]), value);
        }
    }
}
