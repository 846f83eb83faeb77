//! Reading and parsing HTTP/1.1 message heads, just enough for the lab.

use std::io::{self, Read};

/// A message head: the start line and the header fields in order.
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Reads up to and including the empty line that ends a head.
    pub fn read(stream: &mut impl Read) -> io::Result<Head> {
        let mut bytes = Vec::new();
        let mut byte = [0u8];
        while !bytes.ends_with(b"\r\n\r\n") {
            // A signal to the process (a child exiting) may interrupt a read.
            let read = match stream.read(&mut byte) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                read => read?,
            };
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the connection closed inside a head after {:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                ));
            }
            bytes.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.split("\r\n").filter(|line| !line.is_empty());
        let start_line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Ok(Head {
            start_line,
            headers,
        })
    }

    /// The first value of the field `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}
