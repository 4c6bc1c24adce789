//! Linux adapters (being written).
