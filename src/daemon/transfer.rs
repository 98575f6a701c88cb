//! Engine API requests beyond small GETs: a response body streamed into a
//! file (`GET /images/get`), a file streamed up as the request body
//! (`POST /images/load`), and JSON posts (create, start, connect).
//!
//! Images can take minutes to export or load, so these requests are bound
//! by an idle timeout (no byte moved for that long) instead of a deadline.

use std::io::{self, BufReader, Read, Write};
use std::time::Duration;

use serde_json::Value;

use super::api::{ApiError, DockerApi, error_message};
use super::http::{
    self, COPY_BUFFER, HttpError, IdleStream, read_body, read_headers, read_status_line,
};

/// Creating or starting a container on a busy host can take longer than a
/// status query is given.
const MIN_CALL_IDLE: Duration = Duration::from_secs(60);

/// What goes up after the request head.
enum Body<'a> {
    None,
    Json(Vec<u8>),
    /// A file of `len` bytes, streamed with progress.
    File {
        input: &'a mut dyn Read,
        len: u64,
        content_type: &'a str,
        progress: &'a mut dyn FnMut(u64),
    },
}

impl DockerApi {
    /// `GET target`, its body written to `out` as it arrives; returns the
    /// byte count. `progress` sees the running total.
    pub(crate) fn get_to(
        &self,
        target: &str,
        out: &mut dyn Write,
        idle: Duration,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ApiError> {
        let fail = |reason: String| self.transfer_error("GET", target, reason);
        let mut reader = self.send("GET", target, Body::None, idle)?;
        let headers = self.read_head(&mut reader, "GET", target)?;
        let copied = http::stream_body(&mut reader, &headers, out, progress)
            .map_err(|e| fail(format!("reading the body: {e}")))?;
        out.flush()
            .map_err(|e| fail(format!("writing the body: {e}")))?;
        Ok(copied)
    }

    /// `POST target` with `len` bytes of `input` as the body; returns the
    /// response body (bounded).
    pub(crate) fn post_from(
        &self,
        target: &str,
        content_type: &str,
        input: &mut dyn Read,
        len: u64,
        idle: Duration,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<u8>, ApiError> {
        let body = Body::File {
            input,
            len,
            content_type,
            progress,
        };
        self.exchange("POST", target, body, idle)
    }

    /// `POST target` with a JSON body (or none); returns the response body.
    pub(crate) fn post_json(
        &self,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, ApiError> {
        let body = match body {
            Some(value) => Body::Json(serde_json::to_vec(value).expect("JSON values serialize")),
            None => Body::None,
        };
        self.exchange("POST", target, body, self.call_idle())
    }

    /// `GET target` decoded as any JSON value.
    pub(crate) fn get_value(&self, target: &str) -> Result<Value, ApiError> {
        let body = self.exchange("GET", target, Body::None, self.call_idle())?;
        serde_json::from_slice(&body)
            .map_err(|e| self.transfer_error("GET", target, format!("not JSON: {e}")))
    }

    fn call_idle(&self) -> Duration {
        self.request_timeout().max(MIN_CALL_IDLE)
    }

    fn exchange(
        &self,
        method: &'static str,
        target: &str,
        body: Body<'_>,
        idle: Duration,
    ) -> Result<Vec<u8>, ApiError> {
        let mut reader = self.send(method, target, body, idle)?;
        let headers = self.read_head(&mut reader, method, target)?;
        read_body(&mut reader, 200, &headers)
            .map_err(|e| self.transfer_error(method, target, format!("reading the answer: {e}")))
    }

    fn send(
        &self,
        method: &'static str,
        target: &str,
        body: Body<'_>,
        idle: Duration,
    ) -> Result<BufReader<IdleStream>, ApiError> {
        let fail = |e: io::Error| self.transfer_error(method, target, format!("sending: {e}"));
        let stream = self.connect(idle)?;
        let mut stream = IdleStream::new(stream, idle).map_err(fail)?;
        let (content_type, len) = match &body {
            Body::None => (None, 0),
            Body::Json(bytes) => (Some("application/json"), bytes.len() as u64),
            Body::File {
                len, content_type, ..
            } => (Some(*content_type), *len),
        };
        let head = http::request_head(method, target, content_type, len);
        stream.write_all(head.as_bytes()).map_err(fail)?;
        match body {
            Body::None => {}
            Body::Json(bytes) => stream.write_all(&bytes).map_err(fail)?,
            Body::File {
                input,
                len,
                progress,
                ..
            } => {
                let sent = http::copy(&mut input.take(len), &mut stream, progress).map_err(fail)?;
                if sent != len {
                    return Err(self.transfer_error(
                        method,
                        target,
                        format!("the file ended after {sent} of {len} bytes"),
                    ));
                }
            }
        }
        stream.flush().map_err(fail)?;
        Ok(BufReader::with_capacity(COPY_BUFFER, stream))
    }

    /// Reads the status line and headers; an error status is read whole
    /// and reported with dockerd's message.
    fn read_head(
        &self,
        reader: &mut BufReader<IdleStream>,
        method: &'static str,
        target: &str,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let fail = |e: HttpError| self.transfer_error(method, target, format!("reading: {e}"));
        loop {
            let status = read_status_line(reader).map_err(fail)?;
            let headers = read_headers(reader).map_err(fail)?;
            if (100..200).contains(&status) {
                continue;
            }
            if (200..300).contains(&status) {
                return Ok(headers);
            }
            let body = read_body(reader, status, &headers).unwrap_or_default();
            return Err(self.transfer_error(
                method,
                target,
                format!("answered HTTP {status}: {}", error_message(&body)),
            ));
        }
    }

    fn transfer_error(&self, method: &'static str, target: &str, reason: String) -> ApiError {
        ApiError::Transfer {
            method,
            path: self.socket().to_owned(),
            target: target.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// Answers one connection with `response`, returning what was sent.
    fn serve(response: &'static [u8]) -> (tempfile::TempDir, thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then as many body bytes as Content-Length says.
            loop {
                let n = conn.read(&mut buf).unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if seen.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            conn.write_all(response).unwrap();
            seen
        });
        (dir, handle)
    }

    fn api(dir: &tempfile::TempDir) -> DockerApi {
        DockerApi::new(dir.path().join("s"), Duration::from_secs(5))
    }

    #[test]
    fn a_chunked_body_is_streamed_whole_with_progress() {
        let (dir, server) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        );
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let n = api(&dir)
            .get_to(
                "/images/get?names=a",
                &mut out,
                Duration::from_secs(5),
                &mut |t| seen.push(t),
            )
            .unwrap();
        assert_eq!((n, out.as_slice()), (7, b"abcdefg".as_slice()));
        assert_eq!(seen.last(), Some(&7));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("GET /images/get?names=a HTTP/1.1\r\n"));
    }

    #[test]
    fn a_short_body_and_an_error_status_are_errors() {
        let (dir, _server) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        let err = api(&dir)
            .get_to("/x", &mut Vec::new(), Duration::from_secs(5), &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("3 of 10"), "{err}");
        let (dir, _server) = serve(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 24\r\n\r\n{\"message\":\"disk full\"}\n",
        );
        let err = api(&dir)
            .post_json("/containers/create?name=a", Some(&serde_json::json!({})))
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 500: disk full"), "{err}");
    }

    #[test]
    fn a_file_body_goes_up_with_its_length() {
        let (dir, server) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        let mut input: &[u8] = b"tar bytes";
        let answer = api(&dir)
            .post_from(
                "/images/load",
                "application/x-tar",
                &mut input,
                9,
                Duration::from_secs(5),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(answer, b"{}");
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.contains("Content-Length: 9\r\n"), "{request}");
        assert!(request.contains("Content-Type: application/x-tar\r\n"));
        assert!(request.ends_with("\r\n\r\ntar bytes"), "{request}");
    }
}
