//! A lean HTTP/1.1 keep-alive client over one `TcpStream`, so the load
//! generator spends as little of the 2 cores as possible (reqwest is used
//! only for set-up calls). It understands `Content-Length` and chunked bodies,
//! which is all the servers under test send.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long one request may take before the connection counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A finished response.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Content-Security-Policy` header, when there is one.
    pub policy: Option<String>,
}

/// Builds a request once, so the hot loop only writes bytes.
pub fn post_form(path: &str, cookie: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A GET with the session cookie (for server-rendered pages).
pub fn get(path: &str, cookie: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: text/html\r\n\r\n").into_bytes()
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None, buf: Vec::with_capacity(16 * 1024) }
    }

    /// Sends `request` and reads the whole answer; reconnects once if the
    /// kept-alive connection was closed by the server.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Answer> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.try_send(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
            }
        }
    }

    async fn try_send(&mut self, request: &[u8]) -> io::Result<Answer> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().ok_or_else(|| io::Error::other("no stream"))?;
        stream.write_all(request).await?;
        let (answer, close) = read_response(stream, &mut self.buf).await?;
        if close {
            self.stream = None;
        }
        Ok(answer)
    }
}

/// Reads one response from `stream`, keeping unread bytes in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(Answer, bool)> {
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8"))?.to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
    let close = head.contains("\r\nconnection: close");
    let header = |name: &str| {
        head.split("\r\n").find_map(|line| line.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
    };
    // As sent (a nonce is case-sensitive), not lowercased like `head`.
    let policy = header("content-security-policy").map(|_| {
        let raw = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        raw.split("\r\n")
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-security-policy")))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    });
    buf.drain(..head_end);
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        while buf.len() < len {
            fill(stream, buf).await?;
        }
        buf.drain(..len).collect()
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf).await?
    } else {
        return Err(bad("neither content-length nor chunked"));
    };
    Ok((Answer { status, body, policy }, close))
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = find(buf, b"\r\n") {
                break at;
            }
            fill(stream, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size"))?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
        if size == 0 {
            return Ok(body);
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
