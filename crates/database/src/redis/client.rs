//! A connection to a Redis server speaking RESP2, the protocol every Redis since 2.0 answers: a command is an array
//! of bulk strings, an answer one of five typed values. The daemon sends a handful of commands (AUTH, PING, BGSAVE,
//! INFO, a seed file's lines), so this small codec is all it needs of a client.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::DatabaseError;

/// How long a command may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The most an answer may hold (its strings' bytes, and 16 for each element): the daemon reads answers whole, and
/// a seed file from a pull request must not make it hold gigabytes.
const MOST: i64 = 16 * 1024 * 1024;

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(String),
    /// An error reply: the command was refused (`ERR …`, `WRONGPASS …`).
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Answer>>),
}

impl Answer {
    /// The answer as text, for people (bulk strings lossily).
    pub fn text(&self) -> String {
        match self {
            Answer::Status(s) | Answer::Error(s) => s.clone(),
            Answer::Integer(i) => i.to_string(),
            Answer::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Answer::Bulk(None) | Answer::Array(None) => "(nil)".to_owned(),
            Answer::Array(Some(items)) => {
                items.iter().map(Answer::text).collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// One connection, authenticated.
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `host:port` and logs in as `user`.
    pub async fn connect(
        host: &str,
        port: u16,
        user: &str,
        password: &preview_secrets::Secret,
    ) -> Result<Client, DatabaseError> {
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                DatabaseError::Server(format!("cannot reach Redis at {host}:{port}: no answer"))
            })?
            .map_err(|e| {
                DatabaseError::Server(format!("cannot reach Redis at {host}:{port}: {e}"))
            })?;
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream: BufReader::new(stream),
        };
        match client
            .command(&[b"AUTH", user.as_bytes(), password.expose().as_bytes()])
            .await?
        {
            Answer::Status(_) => Ok(client),
            // Redis's own words (`WRONGPASS invalid username-password pair …`) never hold the password.
            other => Err(DatabaseError::Server(format!(
                "Redis at {host}:{port} refused the login of `{user}`: {}",
                other.text()
            ))),
        }
    }

    /// Sends one command and reads its answer; an error reply is an `Answer::Error`, not an `Err`.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Answer, DatabaseError> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg);
            frame.extend_from_slice(b"\r\n");
        }
        let lost = |e: std::io::Error| {
            DatabaseError::Server(format!("the connection to Redis broke: {e}"))
        };
        self.stream
            .get_mut()
            .write_all(&frame)
            .await
            .map_err(lost)?;
        tokio::time::timeout(ANSWER_TIMEOUT, read_answer(&mut self.stream))
            .await
            .map_err(|_| DatabaseError::Server("Redis did not answer in time".to_owned()))?
    }

    /// Sends a command whose answer must not be an error reply; `context` says what it was for.
    pub async fn expect(&mut self, args: &[&[u8]], context: &str) -> Result<Answer, DatabaseError> {
        match self.command(args).await? {
            Answer::Error(message) => Err(DatabaseError::Server(format!("{context}: {message}"))),
            answer => Ok(answer),
        }
    }
}

/// Reads one answer (arrays recursively).
async fn read_answer(stream: &mut BufReader<TcpStream>) -> Result<Answer, DatabaseError> {
    let mut pending: Vec<(Vec<Answer>, usize)> = Vec::new();
    let mut budget = MOST;
    let too_large = || {
        DatabaseError::Server(format!(
            "Redis's answer is larger than {} MiB, more than preview reads",
            MOST / 1024 / 1024
        ))
    };
    loop {
        let line = read_line(stream).await?;
        let Some((kind, rest)) = line.split_at_checked(1) else {
            return Err(garbled(&line));
        };
        let value = match kind {
            "+" => Answer::Status(rest.to_owned()),
            "-" => Answer::Error(rest.to_owned()),
            ":" => Answer::Integer(number(rest)?),
            "$" => match number(rest)? {
                -1 => Answer::Bulk(None),
                length if (0..=budget).contains(&length) => {
                    budget -= length;
                    let mut bytes = vec![0; length as usize + 2];
                    stream.read_exact(&mut bytes).await.map_err(|e| {
                        DatabaseError::Server(format!("the connection to Redis broke: {e}"))
                    })?;
                    bytes.truncate(length as usize);
                    Answer::Bulk(Some(bytes))
                }
                length if length > 0 => return Err(too_large()),
                _ => return Err(garbled(&line)),
            },
            "*" => match number(rest)? {
                -1 => Answer::Array(None),
                0 => Answer::Array(Some(Vec::new())),
                length if (1..=budget / 16).contains(&length) => {
                    budget -= length * 16;
                    pending.push((Vec::new(), length as usize));
                    continue;
                }
                length if length > 0 => return Err(too_large()),
                _ => return Err(garbled(&line)),
            },
            _ => return Err(garbled(&line)),
        };
        let mut value = value;
        loop {
            let Some((items, wanted)) = pending.last_mut() else {
                return Ok(value);
            };
            items.push(value);
            if items.len() < *wanted {
                break;
            }
            let (items, _) = pending.pop().unwrap_or_default();
            value = Answer::Array(Some(items));
        }
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> Result<String, DatabaseError> {
    let mut line = Vec::new();
    // A status or error line is short; one that is not is not read whole.
    let read = (&mut *stream)
        .take(MOST as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| DatabaseError::Server(format!("the connection to Redis broke: {e}")))?;
    if read == 0 {
        return Err(DatabaseError::Server(
            "Redis closed the connection".to_owned(),
        ));
    }
    if !line.ends_with(b"\r\n") || line.len() < 3 {
        return Err(garbled(&String::from_utf8_lossy(&line)));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|e| garbled(&String::from_utf8_lossy(e.as_bytes())))
}

fn number(text: &str) -> Result<i64, DatabaseError> {
    text.parse().map_err(|_| garbled(text))
}

fn garbled(line: &str) -> DatabaseError {
    DatabaseError::Server(format!(
        "Redis answered something that is not RESP: {:?}",
        line.chars().take(40).collect::<String>()
    ))
}
