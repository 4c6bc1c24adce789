//! otalite board support (being written).
