//! A SQL script (a seed file) taken apart into its statements, each with the line it starts on, so that they run
//! one by one and an error names its line — without `psql`, whose meta-commands (`\!` runs a shell, `\copy`
//! reads and writes files) would run a pull request's file with the daemon's rights. Knows SQL's quoting:
//! `'…'` (with `''`), `E'…'` (with backslash escapes), `"…"`, `$tag$…$tag$`, `--` and nested `/* */` comments.
//! `COPY … FROM stdin;` followed by its rows and a `\.` line, as a plain `pg_dump` writes them, is kept with its
//! rows. Any other line that starts with a backslash is refused.

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// SQL, without its final `;`.
    Sql { line: usize, text: String },
    /// `COPY … FROM stdin` and its rows (text format, each ending in `\n`).
    CopyIn {
        line: usize,
        text: String,
        rows: String,
    },
}

impl Statement {
    pub fn line(&self) -> usize {
        match self {
            Statement::Sql { line, .. } | Statement::CopyIn { line, .. } => *line,
        }
    }
}

/// The statements of `script`, or the line of a psql meta-command and what it was.
pub fn statements(script: &str) -> Result<Vec<Statement>, (usize, String)> {
    let bytes = script.as_bytes();
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let mut start: Option<(usize, usize)> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if start.is_none() {
            if c.is_ascii_whitespace() {
                if c == b'\n' {
                    line += 1;
                }
                i += 1;
                continue;
            }
            if c == b'\\' {
                let end = script[i..].find('\n').map_or(bytes.len(), |n| i + n);
                return Err((line, script[i..end].trim().to_owned()));
            }
            if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
                i = script[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            start = Some((i, line));
        }
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = script[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if bytes[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b'\'' | b'"' => {
                let escapes = c == b'\''
                    && i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if escapes => {
                            if bytes.get(i + 1) == Some(&b'\n') {
                                line += 1;
                            }
                            i += 2;
                        }
                        b'\n' => {
                            line += 1;
                            i += 1;
                        }
                        q if q == c => {
                            // A doubled quote is the quote itself.
                            if bytes.get(i + 1) == Some(&c) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            b'$' => match dollar_tag(&script[i..]) {
                Some(tag) => {
                    let body = i + tag.len();
                    let end = script[body..]
                        .find(tag)
                        .map_or(bytes.len(), |n| body + n + tag.len());
                    line += script[i..end].matches('\n').count();
                    i = end;
                }
                None => i += 1,
            },
            b';' => {
                let (from, first_line) = start.take().unwrap_or((i, line));
                let text = script[from..i].trim().to_owned();
                i += 1;
                if is_copy_from_stdin(&text) {
                    // The rows follow on the next line, up to a line `\.`.
                    let rows_start = script[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                    let mut rows_end = rows_start;
                    let mut next = bytes.len();
                    for (offset, row) in
                        script[rows_start..]
                            .split_inclusive('\n')
                            .scan(rows_start, |at, row| {
                                let here = *at;
                                *at += row.len();
                                Some((here, row))
                            })
                    {
                        if row.trim_end_matches(['\n', '\r']) == "\\." {
                            rows_end = offset;
                            next = offset + row.len();
                            break;
                        }
                        rows_end = offset + row.len();
                    }
                    line += script[i..next].matches('\n').count();
                    found.push(Statement::CopyIn {
                        line: first_line,
                        text,
                        rows: script[rows_start..rows_end].to_owned(),
                    });
                    i = next;
                } else if !text.is_empty() {
                    found.push(Statement::Sql {
                        line: first_line,
                        text,
                    });
                }
            }
            _ => i += 1,
        }
    }
    if let Some((from, first_line)) = start {
        let text = script[from..].trim();
        if !text.is_empty() {
            found.push(Statement::Sql {
                line: first_line,
                text: text.to_owned(),
            });
        }
    }
    Ok(found)
}

/// `$$` or `$tag$` at the start of `text`, when it opens a dollar-quoted string.
fn dollar_tag(text: &str) -> Option<&str> {
    let rest = &text[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    (tag.is_empty()
        || (tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !tag.starts_with(|c: char| c.is_ascii_digit())))
    .then(|| &text[..end + 2])
}

fn is_copy_from_stdin(statement: &str) -> bool {
    let lower = statement.to_ascii_lowercase();
    lower.starts_with("copy ")
        && lower
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["from", "stdin"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(line: usize, text: &str) -> Statement {
        Statement::Sql {
            line,
            text: text.to_owned(),
        }
    }

    fn check(script: &str, expected: &[Statement]) {
        assert_eq!(statements(script).as_deref(), Ok(expected), "{script}");
    }

    #[test]
    fn statements_are_split_where_sql_ends_them() {
        check(
            "SELECT 1;\nSELECT 2;",
            &[sql(1, "SELECT 1"), sql(2, "SELECT 2")],
        );
        check(
            "-- a comment; not a statement\n\nINSERT INTO t VALUES ('a;b', 'it''s');\n",
            &[sql(3, "INSERT INTO t VALUES ('a;b', 'it''s')")],
        );
        check(
            "/* one; /* nested; */ still; */ SELECT 1;\nSELECT \"odd;name\" FROM t;",
            &[
                sql(1, "/* one; /* nested; */ still; */ SELECT 1"),
                sql(2, "SELECT \"odd;name\" FROM t"),
            ],
        );
        check(
            "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN\n  RETURN 1;\nEND;\n$body$ LANGUAGE plpgsql;\nSELECT $$a;b$$;",
            &[
                sql(
                    1,
                    "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN\n  RETURN 1;\nEND;\n$body$ LANGUAGE plpgsql",
                ),
                sql(6, "SELECT $$a;b$$"),
            ],
        );
        check(
            "SELECT E'a\\';b';\nSELECT 'a\\';\nSELECT 2;",
            &[
                sql(1, "SELECT E'a\\';b'"),
                sql(2, "SELECT 'a\\'"),
                sql(3, "SELECT 2"),
            ],
        );
        check("SELECT 1", &[sql(1, "SELECT 1")]);
        check("\n\n  \n", &[]);
    }

    #[test]
    fn copy_from_stdin_keeps_its_rows() {
        check(
            "COPY t (a, b) FROM stdin;\n1\tx;y\n2\t\\N\n\\.\nSELECT 3;\n",
            &[
                Statement::CopyIn {
                    line: 1,
                    text: "COPY t (a, b) FROM stdin".to_owned(),
                    rows: "1\tx;y\n2\t\\N\n".to_owned(),
                },
                sql(5, "SELECT 3"),
            ],
        );
    }

    #[test]
    fn psql_meta_commands_are_refused_with_their_line() {
        assert_eq!(
            statements("SELECT 1;\n\\! rm -rf /\n"),
            Err((2, "\\! rm -rf /".to_owned()))
        );
        assert_eq!(
            statements("SELECT 1;\n  \\copy t from '/etc/shadow'"),
            Err((2, "\\copy t from '/etc/shadow'".to_owned()))
        );
        // Inside a string it is data.
        check(
            "SELECT '\n\\! not a command';",
            &[sql(1, "SELECT '\n\\! not a command'")],
        );
    }
}
