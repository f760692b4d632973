//! A Redis seed file of commands, one per line as `redis-cli` reads them: arguments separated by blanks, in
//! `"double quotes"` (with `\n`, `\r`, `\t`, `\"`, `\\` and `\xHH` escapes) or `'single quotes'` (with `\'`) when they
//! hold blanks; empty lines and lines starting with `#` are skipped. Pure: nothing here talks to a server.

/// One command of a seed file and the line it is on (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: usize,
    pub args: Vec<Vec<u8>>,
}

/// The commands of `text`, or `file:line: what is wrong` for the first line that is not one.
pub fn parse_commands(text: &[u8], file: &str) -> Result<Vec<Command>, String> {
    let text = std::str::from_utf8(text).map_err(|e| {
        let line = text[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        format!("{file}:{line}: not UTF-8 text; a seed file of Redis commands is text (an RDB file's name ends in .rdb)")
    })?;
    let mut commands = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let args = split_arguments(trimmed).map_err(|e| format!("{file}:{}: {e}", index + 1))?;
        commands.push(Command {
            line: index + 1,
            args,
        });
    }
    Ok(commands)
}

fn split_arguments(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(args);
        };
        let mut arg = Vec::new();
        match first {
            '"' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("a `\"` is not closed".to_owned()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => arg.push(b'\n'),
                            Some('r') => arg.push(b'\r'),
                            Some('t') => arg.push(b'\t'),
                            Some('b') => arg.push(8),
                            Some('a') => arg.push(7),
                            Some('x') => {
                                let hex: String =
                                    [chars.next(), chars.next()].into_iter().flatten().collect();
                                match u8::from_str_radix(&hex, 16) {
                                    Ok(byte) if hex.len() == 2 => arg.push(byte),
                                    _ => {
                                        return Err(format!(
                                            "`\\x{hex}` is not a byte; write `\\x` and two hex digits"
                                        ));
                                    }
                                }
                            }
                            Some(other) => push_char(&mut arg, other),
                            None => return Err("a `\"` is not closed".to_owned()),
                        },
                        Some(c) => push_char(&mut arg, c),
                    }
                }
                check_closed(chars.peek())?;
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("a `'` is not closed".to_owned()),
                        Some('\'') => break,
                        Some('\\') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            arg.push(b'\'');
                        }
                        Some(c) => push_char(&mut arg, c),
                    }
                }
                check_closed(chars.peek())?;
            }
            _ => {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    push_char(&mut arg, c);
                }
            }
        }
        args.push(arg);
    }
}

fn push_char(arg: &mut Vec<u8>, c: char) {
    let mut buffer = [0; 4];
    arg.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

/// A closing quote ends its argument: a blank or the end of the line must follow.
fn check_closed(next: Option<&char>) -> Result<(), String> {
    match next {
        Some(c) if !c.is_whitespace() => Err(format!(
            "`{c}` right after a closing quote; separate arguments with a blank"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<Vec<(usize, Vec<&str>)>, &str>) {
        let got = parse_commands(text.as_bytes(), "seed.redis").map(|commands| {
            commands
                .into_iter()
                .map(|c| {
                    (
                        c.line,
                        c.args
                            .into_iter()
                            .map(|a| String::from_utf8(a).expect("text"))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        });
        let expected = expected
            .map(|commands| {
                commands
                    .into_iter()
                    .map(|(line, args)| (line, args.into_iter().map(str::to_owned).collect()))
                    .collect()
            })
            .map_err(str::to_owned);
        assert_eq!(got, expected, "for {text:?}");
    }

    #[test]
    fn commands_are_split_like_redis_cli_reads_them() {
        check("SET a 1\n", Ok(vec![(1, vec!["SET", "a", "1"])]));
        check(
            "# carts\n\n  HSET cart:1 sku \"blue mug\"  qty 2 \n",
            Ok(vec![(
                3,
                vec!["HSET", "cart:1", "sku", "blue mug", "qty", "2"],
            )]),
        );
        check(
            "SET k \"a\\\"b\\n\\x41\"\nSET j 'it\\'s'\n",
            Ok(vec![
                (1, vec!["SET", "k", "a\"b\nA"]),
                (2, vec!["SET", "j", "it's"]),
            ]),
        );
        check("SET e \"\"\n", Ok(vec![(1, vec!["SET", "e", ""])]));
        check("SET u ünï\r\n", Ok(vec![(1, vec!["SET", "u", "ünï"])]));
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        check(
            "SET a 1\nSET b \"open\n",
            Err("seed.redis:2: a `\"` is not closed"),
        );
        check("SET a 'open", Err("seed.redis:1: a `'` is not closed"));
        check(
            "\n\nSET a \"x\"y\n",
            Err("seed.redis:3: `y` right after a closing quote; separate arguments with a blank"),
        );
        check(
            "SET a \"\\xZZ\"",
            Err("seed.redis:1: `\\xZZ` is not a byte; write `\\x` and two hex digits"),
        );
        assert_eq!(
            parse_commands(b"SET a 1\nSET b \xff\n", "seed.redis").expect_err("not text"),
            "seed.redis:2: not UTF-8 text; a seed file of Redis commands is text (an RDB file's name ends in .rdb)"
        );
    }
}
