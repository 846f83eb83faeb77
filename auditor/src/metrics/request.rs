//! One scrape: read a request from a stranger, answer it, close.
//!
//! The request is bounded in size and time and parsed with httparse; only
//! `GET /metrics` gets the metrics.

use std::{io, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::exposition::CONTENT_TYPE;

/// The most of a request head read; a longer one is answered 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEADERS: usize = 32;
const CHUNK_BYTES: usize = 1024;

/// What the client sent, as far as the answer goes.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    Other,
    Malformed,
    TooLarge,
    /// The client closed before a whole request head.
    Gone,
}

/// Reads one request from `stream` and answers it with `metrics` or an
/// error status, then closes; a client that sends no whole request head
/// within [`REQUEST_TIMEOUT`] gets nothing.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    metrics: &str,
) -> io::Result<()> {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(request) => request?,
        Err(_elapsed) => return Ok(()),
    };
    let response = match request {
        Request::Metrics => response("200 OK", CONTENT_TYPE, metrics),
        Request::Other => response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            "Not found: the metrics are at GET /metrics\n",
        ),
        Request::Malformed => response(
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "Not an HTTP/1.x request\n",
        ),
        Request::TooLarge => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "Request head too large\n",
        ),
        Request::Gone => return Ok(()),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Request> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; CHUNK_BYTES];
    loop {
        let room = MAX_REQUEST_BYTES - head.len();
        if room == 0 {
            return Ok(Request::TooLarge);
        }
        let read = stream.read(&mut chunk[..room.min(CHUNK_BYTES)]).await?;
        if read == 0 {
            return Ok(Request::Gone);
        }
        head.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Partial) => {}
            Ok(httparse::Status::Complete(_)) => {
                let path = request.path.unwrap_or_default();
                let path = path.split_once('?').map_or(path, |(path, _query)| path);
                return Ok(match (request.method, path) {
                    (Some("GET"), "/metrics") => Request::Metrics,
                    _ => Request::Other,
                });
            }
            Err(httparse::Error::TooManyHeaders) => return Ok(Request::TooLarge),
            Err(_) => return Ok(Request::Malformed),
        }
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    /// What a client sending `request` (and then nothing, the stream left
    /// open) reads back until the server closes.
    async fn exchange(request: &[u8]) -> String {
        let (mut client, server) = duplex(64 * 1024);
        let served = tokio::spawn(async move { answer(server, "metric_total 1\n").await });
        client.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        served.await.unwrap().unwrap();
        String::from_utf8(answer).unwrap()
    }

    fn run<T>(test: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test)
    }

    #[test]
    fn get_metrics_is_answered_with_the_text() {
        let answer = run(exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(
            answer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\nmetric_total 1\n"
        );
        let with_query = run(exchange(b"GET /metrics?name=x HTTP/1.0\r\n\r\n"));
        assert!(
            with_query.starts_with("HTTP/1.1 200 OK\r\n"),
            "{with_query}"
        );
    }

    #[test]
    fn other_paths_and_methods_are_not_found() {
        for request in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /metrics/ HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"HEAD /metrics HTTP/1.1\r\n\r\n",
        ] {
            let answer = run(exchange(request));
            assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
            assert!(!answer.contains("metric_total"));
        }
    }

    #[test]
    fn garbage_is_a_bad_request_and_the_connection_closes() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET /metrics HTTP/9.9\r\n\r\n",
            b"GET\0/metrics HTTP/1.1\r\n\r\n",
        ] {
            let answer = run(exchange(garbage));
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{garbage:?}: {answer}"
            );
        }
    }

    #[test]
    fn an_oversized_request_is_refused_after_the_limit() {
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        request.resize(MAX_REQUEST_BYTES * 4, b'a');
        let answer = run(exchange(&request));
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{answer}"
        );
        let many_headers: Vec<u8> = std::iter::once(&b"GET /metrics HTTP/1.1\r\n"[..])
            .chain(std::iter::repeat_n(&b"A: b\r\n"[..], MAX_HEADERS + 1))
            .chain([&b"\r\n"[..]])
            .flatten()
            .copied()
            .collect();
        assert!(run(exchange(&many_headers)).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn a_silent_or_vanishing_client_gets_nothing() {
        // Paused time: the timeout passes at once when nothing else can run.
        assert_eq!(run(exchange(b"GET /metr")), "");
        let closed_early = run(async {
            let (mut client, server) = duplex(1024);
            client
                .write_all(b"GET /metrics HTTP/1.1\r\n")
                .await
                .unwrap();
            drop(client);
            answer(server, "metric_total 1\n").await
        });
        assert!(closed_early.is_ok());
    }
}
