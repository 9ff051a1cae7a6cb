//! TODO: eval (being written).
