//! Shared pieces of the engine commands (pretrain, sample, eval).
