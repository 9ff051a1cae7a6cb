//! TODO: sampler (being written).
