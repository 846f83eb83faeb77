//! An exchange as `--exchanges` prints it, one JSON object per line: every
//! field of [`Exchange`], every string from the wire through a [`Redactor`]
//! that allows nothing ([`Redactor::exchange_field`]), so that the secrets
//! events never show do not show here either.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::redact::{RedactionAllowlist, Redactor};
use crate::http::{Exchange, Headers, RequestHead, ResponseHead};

/// Serializes its exchange redacted.
pub struct ExchangeRecord<'a>(pub &'a Exchange);

impl Serialize for ExchangeRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured whole, so that a new field cannot be left out.
        let Exchange {
            connection,
            client,
            server,
            interface,
            request,
            interim,
            response,
            switched,
            early_data,
            pipelined_behind,
            not_http_after_decline,
            request_ns,
            response_ns,
            quality,
            pairing,
        } = self.0;
        let nothing_allowed = RedactionAllowlist::default();
        let redactor = Redactor::new(&nothing_allowed, self.0);
        let redacted_response = |head| RedactedResponse {
            head,
            redactor: &redactor,
        };
        let mut fields = serializer.serialize_struct("Exchange", 15)?;
        fields.serialize_field("connection", connection)?;
        fields.serialize_field("client", client)?;
        fields.serialize_field("server", server)?;
        fields.serialize_field("interface", interface)?;
        let request = request.as_ref().map(|head| RedactedRequest {
            head,
            redactor: &redactor,
        });
        fields.serialize_field("request", &request)?;
        let interim: Vec<RedactedResponse> = interim.iter().map(redacted_response).collect();
        fields.serialize_field("interim", &interim)?;
        fields.serialize_field("response", &response.as_ref().map(redacted_response))?;
        fields.serialize_field("switched", switched)?;
        fields.serialize_field("early_data", early_data)?;
        fields.serialize_field("pipelined_behind", pipelined_behind)?;
        fields.serialize_field("not_http_after_decline", not_http_after_decline)?;
        fields.serialize_field("request_ns", request_ns)?;
        fields.serialize_field("response_ns", response_ns)?;
        fields.serialize_field("quality", quality)?;
        fields.serialize_field("pairing", pairing)?;
        fields.end()
    }
}

struct RedactedRequest<'a> {
    head: &'a RequestHead,
    redactor: &'a Redactor<'a>,
}

impl Serialize for RedactedRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (head, redactor) = (self.head, self.redactor);
        let mut fields = serializer.serialize_struct("RequestHead", 4)?;
        fields.serialize_field("method", &redactor.text(&head.line.method))?;
        fields.serialize_field("target", &redactor.target(&head.line.target))?;
        fields.serialize_field("version", &head.version)?;
        fields.serialize_field("headers", &RedactedHeaders(&head.headers, redactor))?;
        fields.end()
    }
}

struct RedactedResponse<'a> {
    head: &'a ResponseHead,
    redactor: &'a Redactor<'a>,
}

impl Serialize for RedactedResponse<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (head, redactor) = (self.head, self.redactor);
        let mut fields = serializer.serialize_struct("ResponseHead", 4)?;
        fields.serialize_field("version", &head.version)?;
        fields.serialize_field("status", &head.line.status)?;
        fields.serialize_field("reason", &redactor.text(&head.line.reason))?;
        fields.serialize_field("headers", &RedactedHeaders(&head.headers, redactor))?;
        fields.end()
    }
}

/// Each field line as `{"name": …, "value": …}`.
struct RedactedHeaders<'a>(&'a Headers, &'a Redactor<'a>);

impl Serialize for RedactedHeaders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let RedactedHeaders(headers, redactor) = *self;
        serializer.collect_seq(headers.iter().map(|line| RedactedHeader {
            name: line.name,
            value: redactor.exchange_field(line.name, line.value),
        }))
    }
}

#[derive(Serialize)]
struct RedactedHeader<'a> {
    name: &'a str,
    value: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Header, HttpVersion, Pairing, Quality, RequestLine, StatusLine, Switched};
    use crate::rules::testing;

    fn header<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn sample() -> Exchange {
        Exchange {
            connection: 7,
            client: "10.0.0.1:40000".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
            interface: Some(3),
            request: Some(RequestHead {
                line: RequestLine {
                    method: "GET".into(),
                    target: "/chat?token=s3cret&x=1".into(),
                },
                version: HttpVersion::Http11,
                headers: Headers::from_iter([
                    header("Host", "example"),
                    header("Authorization", "Bearer s3cret"),
                    header("cookie", "sid=s3cret"),
                    header("Proxy-Authorization", "Basic s3cret"),
                    header("Connection", "keep-alive"),
                    header("Connection", " Upgrade "),
                    header("Upgrade", "websocket"),
                ]),
            }),
            interim: vec![],
            response: Some(ResponseHead {
                version: HttpVersion::Http11,
                line: StatusLine {
                    status: 101,
                    reason: "Switching Protocols".into(),
                },
                headers: Headers::from_iter([
                    header("Set-Cookie", "sid=s3cret"),
                    header("X-Bin", "a\u{fffd}b"),
                ]),
            }),
            switched: Some(Switched {
                client_bytes: vec![0x81, 0x0a],
                server_bytes: vec![],
            }),
            early_data: None,
            pipelined_behind: false,
            not_http_after_decline: None,
            request_ns: Some(1),
            response_ns: Some(2),
            quality: Quality {
                complete: true,
                ..Quality::default()
            },
            pairing: Pairing::Certain,
        }
    }

    #[test]
    fn json_redacts_secrets_and_query_but_memory_keeps_them() {
        let exchange = sample();
        let json = serde_json::to_string(&ExchangeRecord(&exchange)).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let request = &value["request"];
        assert_eq!(request["target"], "/chat?[redacted]");
        assert_eq!(request["version"], "HTTP/1.1");
        assert_eq!(request["headers"][0]["value"], "example");
        for i in 1..4 {
            assert_eq!(request["headers"][i]["value"], "[redacted]");
        }
        assert_eq!(value["response"]["headers"][0]["value"], "[redacted]");
        assert_eq!(value["switched"]["client_bytes"], "810a");
        assert_eq!(value["switched"]["server_bytes"], "");
        assert_eq!(value["client"], "10.0.0.1:40000");
        assert_eq!(value["quality"]["complete"], true);
        let in_memory = exchange.request.as_ref().unwrap();
        assert_eq!(in_memory.line.target, "/chat?token=s3cret&x=1");
        assert_eq!(
            in_memory.header_values("authorization").next(),
            Some(&b"Bearer s3cret"[..])
        );
    }

    #[test]
    fn json_redacts_userinfo_and_subprotocol_tokens() {
        let mut exchange = sample();
        let request = exchange.request.as_mut().unwrap();
        request.line.target = "http://user:pa55@example/chat".into();
        request.headers.push(
            "Sec-WebSocket-Protocol",
            b"v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9rZW4",
        );
        let json = serde_json::to_string(&ExchangeRecord(&exchange)).unwrap();
        assert!(!json.contains("pa55"), "{json}");
        assert!(!json.contains("dG9rZW4"), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let request = &value["request"];
        assert_eq!(request["target"], "http://[redacted]@example/chat");
        assert_eq!(
            request["headers"][7]["value"],
            "[redacted], base64url.bearer.authorization.k8s.io.[redacted]"
        );
    }

    #[test]
    fn target_without_query_is_kept() {
        let mut exchange = sample();
        exchange.request.as_mut().unwrap().line.target = "/plain".into();
        let value = serde_json::to_value(ExchangeRecord(&exchange)).unwrap();
        assert_eq!(value["request"]["target"], "/plain");
    }

    #[test]
    fn tracked_exchanges_serialize_with_secrets_redacted() {
        let exchange = testing::exchange(
            b"GET /p?token=abc HTTP/1.1\r\nCookie: sid=abc\r\nAuthorization: Basic abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=abc\r\nContent-Length: 0\r\n\r\n",
        );
        let json = serde_json::to_string(&ExchangeRecord(&exchange)).unwrap();
        assert!(!json.contains("abc"), "{json}");
        assert!(json.contains(r#""target":"/p?[redacted]""#), "{json}");
        assert_eq!(
            exchange.request.as_ref().unwrap().line.target,
            "/p?token=abc"
        );
    }
}
