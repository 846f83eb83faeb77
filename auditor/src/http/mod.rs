//! HTTP/1.1 exchange tracking: in-order stream events in, request/response exchanges out.
