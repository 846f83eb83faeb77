//! Finding the next message start in a byte stream whose message boundaries
//! were lost (a gap, bytes that are not HTTP, a connection picked up
//! mid-stream).
//!
//! A request start is found at the end of its line: the line ends with
//! ` HTTP/1.x` and CRLF (or LF), the request target is the run of visible
//! bytes before that, and the method the run of token bytes before the
//! target's space. Since a request may follow the end of a body directly
//! (`...body-bytesGET / HTTP/1.1`), the method is that whole run when it is
//! a well-known method, or starts the line and is upper case; else the
//! longest well-known method that ends the run, else its longest upper-case
//! suffix, else the whole run when it starts the line. A response start is
//! `HTTP/1.x SP 3DIGIT` anywhere.

use super::head::{
    is_tchar, status_start_byte_fits, Looks, RequestLineSniffer, Role, MAX_METHOD_LEN,
    STATUS_START_LEN,
};

/// A message start: the bytes of it already scanned, and how many bytes of
/// the input given to [`Scanner::scan`] were used up to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub role: Role,
    pub seed: Vec<u8>,
    pub used: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct Scanner {
    /// None: either kind of start.
    wanted: Option<Role>,
    /// The current line so far, for request starts; None once it is longer
    /// than the head limit (no request can start in it).
    line: Option<Vec<u8>>,
    /// The last bytes scanned, for a response start split across inputs.
    tail: Vec<u8>,
}

const KNOWN_METHODS: [&[u8]; 19] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];

impl Scanner {
    pub(crate) fn new(wanted: Option<Role>) -> Scanner {
        Scanner {
            wanted,
            line: Some(Vec::new()),
            tail: Vec::new(),
        }
    }

    pub(crate) fn set_wanted(&mut self, role: Role) {
        self.wanted = Some(role);
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.line.as_ref().map_or(0, Vec::capacity) + self.tail.capacity()
    }

    /// Bytes before a hole: no message start can span it.
    pub(crate) fn break_continuity(&mut self) {
        self.line = Some(Vec::new());
        self.tail.clear();
    }

    /// Scans `input`; on a message start, returns it (the scanner is then
    /// spent). `max_line` bounds the line kept for request starts.
    pub(crate) fn scan(&mut self, input: &[u8], max_line: usize) -> Option<Found> {
        let request = match self.wanted {
            Some(Role::Server) => None,
            _ => self.scan_requests(input, max_line),
        };
        let response = match self.wanted {
            Some(Role::Client) => None,
            _ => self.scan_responses(input),
        };
        match (request, response) {
            (Some(r), Some(s)) => Some(if s.used < r.used { s } else { r }),
            (found, None) | (None, found) => found,
        }
    }

    fn scan_requests(&mut self, input: &[u8], max_line: usize) -> Option<Found> {
        let mut line_start = 0;
        for (i, &b) in input.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            let piece = &input[line_start..=i];
            line_start = i + 1;
            let Some(mut line) = self.line.replace(Vec::new()) else {
                continue;
            };
            if line.len() + piece.len() > max_line {
                continue;
            }
            super::extend_within(&mut line, piece, max_line);
            if let Some(start) = request_start_in_line(&line) {
                line.drain(..start);
                return Some(Found {
                    role: Role::Client,
                    seed: line,
                    used: i + 1,
                });
            }
        }
        let rest = &input[line_start..];
        if let Some(line) = &mut self.line {
            if line.len() + rest.len() > max_line {
                self.line = None;
            } else {
                super::extend_within(line, rest, max_line);
            }
        }
        None
    }

    fn scan_responses(&mut self, input: &[u8]) -> Option<Found> {
        // A start beginning in the tail: look at the tail plus the first
        // bytes of the input.
        let joined_len = self.tail.len() + input.len().min(STATUS_START_LEN);
        let mut joined = Vec::with_capacity(joined_len);
        joined.extend_from_slice(&self.tail);
        joined.extend_from_slice(&input[..input.len().min(STATUS_START_LEN)]);
        for start in 0..self.tail.len() {
            if status_start(&joined[start..]) == Looks::Yes {
                let seed = joined[start..start + STATUS_START_LEN].to_vec();
                return Some(Found {
                    role: Role::Server,
                    used: start + STATUS_START_LEN - self.tail.len(),
                    seed,
                });
            }
        }
        for start in 0..input.len() {
            match status_start(&input[start..]) {
                Looks::Yes => {
                    let seed = input[start..start + STATUS_START_LEN].to_vec();
                    return Some(Found {
                        role: Role::Server,
                        seed,
                        used: start + STATUS_START_LEN,
                    });
                }
                Looks::Undecided => break,
                Looks::No => {}
            }
        }
        let keep = (STATUS_START_LEN - 1).min(joined.len().max(input.len()));
        let mut tail = Vec::with_capacity(keep);
        if input.len() >= keep {
            tail.extend_from_slice(&input[input.len() - keep..]);
        } else {
            let from_old = keep - input.len();
            tail.extend_from_slice(&self.tail[self.tail.len() - from_old..]);
            tail.extend_from_slice(input);
        }
        self.tail = tail;
        None
    }
}

fn status_start(bytes: &[u8]) -> Looks {
    for (i, &b) in bytes.iter().take(STATUS_START_LEN).enumerate() {
        if !status_start_byte_fits(i, b) {
            return Looks::No;
        }
    }
    if bytes.len() >= STATUS_START_LEN {
        Looks::Yes
    } else {
        Looks::Undecided
    }
}

/// Where a request line starts in `line` (which ends with its LF), if it
/// holds one.
fn request_start_in_line(line: &[u8]) -> Option<usize> {
    let content = line.strip_suffix(b"\n")?;
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    const VERSION_LEN: usize = b" HTTP/1.x".len();
    let version_at = content.len().checked_sub(VERSION_LEN)?;
    let version = &content[version_at..];
    if !version.starts_with(b" HTTP/1.") || !version[VERSION_LEN - 1].is_ascii_digit() {
        return None;
    }
    let before_version = &content[..version_at];
    let target_start = before_version
        .iter()
        .rposition(|&b| b <= b' ' || b == 0x7f)
        .map_or(0, |i| i + 1);
    if target_start == version_at || target_start == 0 || before_version[target_start - 1] != b' ' {
        return None;
    }
    let method_end = target_start - 1;
    let method_run_start = content[..method_end]
        .iter()
        .rposition(|&b| !is_tchar(b))
        .map_or(0, |i| i + 1);
    let run = &content[method_run_start..method_end];
    let method_len = method_in_run(run, method_run_start == 0)?;
    let start = method_end - method_len;
    let mut sniffer = RequestLineSniffer::default();
    let looks = line[start..]
        .iter()
        .fold(Looks::Undecided, |_, &b| sniffer.feed(b));
    (looks == Looks::Yes).then_some(start)
}

/// The length of the method that ends `run` (a run of token bytes).
fn method_in_run(run: &[u8], run_starts_line: bool) -> Option<usize> {
    if run.is_empty() {
        return None;
    }
    let upper = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_';
    if KNOWN_METHODS.contains(&run) || (run_starts_line && run.iter().all(upper)) {
        return Some(run.len()).filter(|&len| len <= MAX_METHOD_LEN);
    }
    if let Some(known) = KNOWN_METHODS
        .iter()
        .filter(|m| run.ends_with(m))
        .map(|m| m.len())
        .max()
    {
        return Some(known);
    }
    let upper_suffix = run.iter().rev().take_while(|b| upper(b)).count();
    let len = if upper_suffix > 0 {
        upper_suffix
    } else if run_starts_line {
        run.len()
    } else {
        return None;
    };
    (len <= MAX_METHOD_LEN).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(wanted: Option<Role>, pieces: &[&[u8]]) -> Option<(usize, Found)> {
        let mut scanner = Scanner::new(wanted);
        pieces
            .iter()
            .enumerate()
            .find_map(|(i, piece)| scanner.scan(piece, 1024).map(|found| (i, found)))
    }

    #[test]
    fn request_start_after_a_body_without_newline() {
        let (piece, found) = scan_all(
            Some(Role::Client),
            &[b"xx\r\nbody-bytesGET /next HTTP/1.1\r\nHost: a\r\n"],
        )
        .unwrap();
        assert_eq!(piece, 0);
        assert_eq!(found.seed, b"GET /next HTTP/1.1\r\n");
        assert_eq!(found.used, b"xx\r\nbody-bytesGET /next HTTP/1.1\r\n".len());
        assert_eq!(found.role, Role::Client);
    }

    #[test]
    fn request_start_split_across_inputs() {
        let (piece, found) = scan_all(
            Some(Role::Client),
            &[b"\x00\x01abc\nPRO", b"PPATCH /a HTT", b"P/1.1\nHost: x\n\n"],
        )
        .unwrap();
        assert_eq!(piece, 2);
        assert_eq!(found.seed, b"PROPPATCH /a HTTP/1.1\n");
        assert_eq!(found.used, 6);
    }

    #[test]
    fn custom_methods_and_non_requests() {
        assert_eq!(request_start_in_line(b"M-SEARCH * HTTP/1.1\r\n"), Some(0));
        assert_eq!(request_start_in_line(b"foo / HTTP/1.1\r\n"), Some(0));
        assert_eq!(request_start_in_line(b"xxPOST / HTTP/1.1\r\n"), Some(2));
        assert_eq!(
            request_start_in_line(b"\x00MY-METHOD / HTTP/1.1\r\n"),
            Some(1)
        );
        assert_eq!(request_start_in_line(b"zzfoo / HTTP/1.1\r\n"), Some(0));
        assert_eq!(request_start_in_line(b"\x01foo / HTTP/1.1\r\n"), None);
        assert_eq!(request_start_in_line(b"GET / HTTP/2.0\r\n"), None);
        assert_eq!(request_start_in_line(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(request_start_in_line(b"GET / HTTP/1.1 \r\n"), None);
    }

    #[test]
    fn response_start_anywhere_even_split() {
        let (piece, found) = scan_all(
            Some(Role::Server),
            &[b"junk HTTP/1.", b"1 204 No Content\r\n"],
        )
        .unwrap();
        assert_eq!(piece, 1);
        assert_eq!(found.seed, b"HTTP/1.1 204");
        assert_eq!(found.used, 5);
        let (_, found) = scan_all(Some(Role::Server), &[b"H", b"T", b"TP/1.0 200 OK"]).unwrap();
        assert_eq!(
            (found.seed.as_slice(), found.used),
            (&b"HTTP/1.0 200"[..], 10)
        );
        let (_, found) = scan_all(Some(Role::Server), &[b"xHTTP/1.1 200 OK"]).unwrap();
        assert_eq!(
            (found.seed.as_slice(), found.used),
            (&b"HTTP/1.1 200"[..], 13)
        );
        assert_eq!(scan_all(Some(Role::Server), &[b"GET / HTTP/1.1\r\n"]), None);
    }

    #[test]
    fn either_role_takes_the_first_start_found() {
        let (_, found) = scan_all(None, &[b"\x00\x00HTTP/1.1 200 OK\r\n"]).unwrap();
        assert_eq!(found.role, Role::Server);
        let (_, found) = scan_all(None, &[b"\x00\nGET / HTTP/1.1\r\n"]).unwrap();
        assert_eq!(found.role, Role::Client);
    }

    #[test]
    fn a_hole_breaks_a_line() {
        let mut scanner = Scanner::new(Some(Role::Client));
        assert_eq!(scanner.scan(b"GET / HT", 1024), None);
        scanner.break_continuity();
        assert_eq!(scanner.scan(b"TP/1.1\r\n", 1024), None);
    }

    #[test]
    fn overlong_lines_are_not_kept() {
        let mut scanner = Scanner::new(Some(Role::Client));
        assert_eq!(scanner.scan(&[b'a'; 100], 50), None);
        assert!(scanner.line.is_none());
        assert_eq!(scanner.scan(b" / HTTP/1.1\r\n", 50), None);
        assert!(scanner.scan(b"GET / HTTP/1.1\r\n", 50).is_some());
    }
}
