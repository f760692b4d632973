//! The cart, a Redis hash `cart` of product id → quantity, reached through `REDIS_URL`
//! (`redis://user:password@host:port/0`). Each call opens a connection, logs in and sends one command in Redis's
//! wire protocol (RESP): small enough to write out for an example.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Cart {
    address: String,
    user: String,
    password: String,
}

impl Cart {
    pub fn from_url(url: &str) -> Result<Cart, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or("REDIS_URL must start with redis://")?;
        let (login, address) = rest.rsplit_once('@').ok_or("REDIS_URL has no user")?;
        let (user, password) = login.split_once(':').ok_or("REDIS_URL has no password")?;
        let address = address.split('/').next().unwrap_or_default().to_owned();
        Ok(Cart {
            address,
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// One more of `product`.
    pub async fn add(&self, product: i64) -> Result<(), String> {
        self.command(&["HINCRBY", "cart", &product.to_string(), "1"])
            .await
            .map(drop)
    }

    /// How many items the cart holds.
    pub async fn items(&self) -> Result<i64, String> {
        let values = self.command(&["HVALS", "cart"]).await?;
        Ok(values.iter().filter_map(|v| v.parse::<i64>().ok()).sum())
    }

    async fn command(&self, args: &[&str]) -> Result<Vec<String>, String> {
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("cannot reach Redis at {}: {e}", self.address))?;
        let mut stream = BufReader::new(stream);
        for command in [&["AUTH", &self.user, &self.password][..], args] {
            let mut frame = format!("*{}\r\n", command.len());
            for arg in command {
                frame.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            stream
                .get_mut()
                .write_all(frame.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        let auth = read(&mut stream).await?;
        if auth.first().map(String::as_str) != Some("OK") {
            return Err("Redis refused the login".to_owned());
        }
        read(&mut stream).await
    }
}

/// One answer: a status, an integer, a bulk string or an array of bulk strings, as text; an error as `Err`.
async fn read(stream: &mut BufReader<TcpStream>) -> Result<Vec<String>, String> {
    let line = read_line(stream).await?;
    match line.split_at_checked(1).unwrap_or(("", "")) {
        ("+", status) | (":", status) => Ok(vec![status.to_owned()]),
        ("-", error) => Err(format!("Redis: {error}")),
        ("$", length) => Ok(vec![read_bulk(stream, length).await?]),
        ("*", count) => {
            let count: usize = count.parse().map_err(|_| "bad array from Redis")?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let line = read_line(stream).await?;
                let length = line.strip_prefix('$').ok_or("expected a bulk string")?;
                items.push(read_bulk(stream, length).await?);
            }
            Ok(items)
        }
        _ => Err(format!("unexpected answer from Redis: {line}")),
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    stream
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    let line = line.trim_end();
    if line.is_empty() {
        return Err("Redis closed the connection".to_owned());
    }
    Ok(line.to_owned())
}

async fn read_bulk(stream: &mut BufReader<TcpStream>, length: &str) -> Result<String, String> {
    let length: i64 = length.parse().map_err(|_| "bad length from Redis")?;
    if length < 0 {
        return Ok(String::new());
    }
    let mut bytes = vec![0; length as usize + 2];
    stream
        .read_exact(&mut bytes)
        .await
        .map_err(|e| e.to_string())?;
    bytes.truncate(length as usize);
    String::from_utf8(bytes).map_err(|e| e.to_string())
}
