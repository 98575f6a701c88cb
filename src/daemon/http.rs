//! HTTP/1.1 over the Engine API's unix socket, as much of it as a client
//! needs: connecting with a timeout, writing a request head, reading the
//! status line and headers, and de-framing a chunked, sized or
//! run-to-the-end body into memory or onto a writer. A read or write is
//! bounded by one deadline for the whole request, or by an idle timeout for
//! transfers that may take minutes.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MAX_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_MESSAGE: usize = 512;
/// The buffer of streamed bodies, up or down.
pub(super) const COPY_BUFFER: usize = 256 * 1024;

/// A response that could not be read as HTTP/1.x.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Malformed(String),
}

fn malformed<T>(reason: impl Into<String>) -> Result<T, HttpError> {
    Err(HttpError::Malformed(reason.into()))
}

/// One HTTP response with its body already de-framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name, compared case-insensitively.
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first header with this name, compared case-insensitively.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// std has no connect timeout; a unix connect blocks only when the
// listener's backlog is full, i.e. when dockerd is wedged, so the attempt
// runs on a thread that is abandoned if it does not return.
pub(super) fn connect(path: PathBuf, timeout: Duration) -> io::Result<UnixStream> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(UnixStream::connect(path));
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))
    })
}

/// The head of a request on a fresh connection that is closed after the
/// answer; a body, when there is one, follows with its length announced.
pub(super) fn request_head(
    method: &str,
    target: &str,
    content_type: Option<&str>,
    content_length: u64,
) -> String {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: docker-userns\r\n\
         Accept: application/json\r\nConnection: close\r\n"
    );
    if let Some(kind) = content_type {
        head.push_str(&format!("Content-Type: {kind}\r\n"));
    }
    if method != "GET" {
        head.push_str(&format!("Content-Length: {content_length}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// At most [`MAX_MESSAGE`] characters of `text`, for an error message.
pub(super) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// A stream whose every read and write is cut off at one deadline, so a
/// daemon that trickles bytes cannot stretch a request past its timeout.
pub(super) struct DeadlineStream {
    stream: UnixStream,
    deadline: Instant,
}

impl DeadlineStream {
    pub(super) fn new(stream: UnixStream, deadline: Instant) -> Self {
        DeadlineStream { stream, deadline }
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"));
        }
        Ok(left)
    }
}

/// A socket timeout shows as `WouldBlock`; it is reported as what it is.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        return io::Error::new(io::ErrorKind::TimedOut, "request timed out");
    }
    e
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf).map_err(timed_out)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A connection whose reads and writes each fail after `idle` without
/// progress, however long the whole transfer takes.
pub(super) struct IdleStream(UnixStream);

impl IdleStream {
    pub(super) fn new(stream: UnixStream, idle: Duration) -> io::Result<Self> {
        stream.set_read_timeout(Some(idle))?;
        stream.set_write_timeout(Some(idle))?;
        Ok(IdleStream(stream))
    }
}

impl Read for IdleStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(timed_out)
    }
}

impl Write for IdleStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Reads one HTTP/1.x response, de-framing the body by
/// `Transfer-Encoding: chunked`, `Content-Length`, or end of stream.
/// Interim `1xx` responses are skipped.
pub fn read_response<R: BufRead>(mut reader: R) -> Result<Response, HttpError> {
    loop {
        let status = read_status_line(&mut reader)?;
        let headers = read_headers(&mut reader)?;
        if (100..200).contains(&status) {
            continue;
        }
        let body = read_body(&mut reader, status, &headers)?;
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

pub(super) fn read_status_line(reader: &mut impl BufRead) -> Result<u16, HttpError> {
    let line = read_line(reader)?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return malformed(format!(
            "not an HTTP/1.x status line: {:?}",
            truncate(&line)
        ));
    }
    let code = parts.next().unwrap_or_default();
    match code.parse::<u16>() {
        Ok(status) if code.len() == 3 && (100..600).contains(&status) => Ok(status),
        _ => malformed(format!("bad status code {code:?}")),
    }
}

pub(super) fn read_headers(reader: &mut impl BufRead) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADERS {
            return malformed("too many headers");
        }
        let Some((name, value)) = line.split_once(':') else {
            return malformed(format!("header without a colon: {:?}", truncate(&line)));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// One CRLF- (or bare LF-) terminated line without its terminator.
fn read_line(reader: &mut impl BufRead) -> Result<String, HttpError> {
    let mut buf = Vec::new();
    reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if buf.last() != Some(&b'\n') {
        if buf.len() > MAX_LINE {
            return malformed("line too long");
        }
        return malformed("connection closed in the middle of the response head");
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

pub(super) fn read_body(
    reader: &mut impl BufRead,
    status: u16,
    headers: &[(String, String)],
) -> Result<Vec<u8>, HttpError> {
    if let Some(coding) = header(headers, "transfer-encoding") {
        if coding
            .rsplit(',')
            .next()
            .map(str::trim)
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        {
            return read_chunked(reader);
        }
        return read_to_end(reader);
    }
    if status == 204 || status == 304 {
        return Ok(Vec::new());
    }
    match header(headers, "content-length") {
        Some(value) => read_exact_body(reader, parse_length(value)?),
        None => read_to_end(reader),
    }
}

fn parse_length(value: &str) -> Result<usize, HttpError> {
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_BODY => Ok(n),
        Ok(_) => malformed("body too large"),
        Err(_) => malformed(format!("bad Content-Length {value:?}")),
    }
}

fn read_exact_body(reader: &mut impl BufRead, len: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    reader.take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return malformed(format!("body ended after {} of {len} bytes", body.len()));
    }
    Ok(body)
}

fn read_to_end(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    reader.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
    if body.len() > MAX_BODY {
        return malformed("body too large");
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let size = chunk_size(&read_line(reader)?)?;
        if size == 0 {
            skip_trailers(reader)?;
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return malformed("body too large");
        }
        body.extend(read_exact_body(reader, size)?);
        if !read_line(reader)?.is_empty() {
            return malformed("chunk longer than its declared size");
        }
    }
}

fn chunk_size(line: &str) -> Result<usize, HttpError> {
    let digits = line.split(';').next().unwrap_or_default().trim();
    match usize::from_str_radix(digits, 16) {
        Ok(n) if !digits.is_empty() && !digits.starts_with('+') => Ok(n),
        _ => malformed(format!("bad chunk size {:?}", truncate(line))),
    }
}

fn skip_trailers(reader: &mut impl BufRead) -> Result<(), HttpError> {
    for _ in 0..=MAX_HEADERS {
        if read_line(reader)?.is_empty() {
            return Ok(());
        }
    }
    malformed("too many trailers")
}

/// Copies the de-framed body to `out`, without a size limit: it goes to a
/// file, not to memory.
pub(super) fn stream_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, HttpError> {
    let chunked = header(headers, "transfer-encoding")
        .and_then(|c| c.rsplit(',').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        return stream_chunked(reader, out, progress);
    }
    match header(headers, "content-length") {
        Some(value) => {
            let len: u64 = value
                .parse()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length {value:?}")))?;
            let copied = copy(&mut reader.take(len), out, progress)?;
            if copied != len {
                return Err(HttpError::Malformed(format!(
                    "body ended after {copied} of {len} bytes"
                )));
            }
            Ok(copied)
        }
        None => Ok(copy(reader, out, progress)?),
    }
}

fn stream_chunked(
    reader: &mut impl BufRead,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, HttpError> {
    let mut total = 0u64;
    loop {
        let size = chunk_size(&read_line(reader)?)? as u64;
        if size == 0 {
            skip_trailers(reader)?;
            return Ok(total);
        }
        let copied = copy(&mut reader.take(size), out, &mut |_| {})?;
        if copied != size {
            return Err(HttpError::Malformed(format!(
                "chunk ended after {copied} of {size} bytes"
            )));
        }
        total += copied;
        progress(total);
        if !read_line(reader)?.is_empty() {
            return Err(HttpError::Malformed(
                "chunk longer than its declared size".into(),
            ));
        }
    }
}

pub(super) fn copy(
    input: &mut dyn Read,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buffer[..n])?;
        total += n as u64;
        progress(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Response, HttpError> {
        read_response(bytes)
    }

    #[test]
    fn content_length_body_stops_at_length() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOKextra")
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"OK");
        assert_eq!(r.header("api-version"), Some("1.41"));
    }

    #[test]
    fn chunked_body_is_joined_and_trailers_skipped() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4\r\n{\"a\"\r\nA;ext=1\r\n:[1,2,3]}\n\r\n0\r\nX-Trailer: y\r\n\r\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.body, b"{\"a\":[1,2,3]}\n");
    }

    #[test]
    fn body_without_framing_runs_to_end_of_stream() {
        let r = parse(b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nall of it").unwrap();
        assert_eq!(r.body, b"all of it");
    }

    #[test]
    fn interim_and_empty_responses() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",
        ];
        for raw in cases {
            assert!(
                parse(raw).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert!(
            matches!(parse(long.as_bytes()), Err(HttpError::Malformed(m)) if m.contains("too long"))
        );
    }
}
