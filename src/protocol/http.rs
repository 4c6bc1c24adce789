//! HTTP/1.1 response framing, sans-IO (being written).
