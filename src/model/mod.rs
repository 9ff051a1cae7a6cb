//! TODO: model (being written).
