//! Host buffers of the fused CPU ops, recycled through a process-wide pool so that the buffers one training
//! step drops (input copies, hidden activations, packed q/k/v, their gradients) serve the next step without
//! being allocated and zero-filled again.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// The pool holds at most this many bytes; a buffer dropped beyond that is freed.
const MAX_POOLED_BYTES: usize = 256 << 20;

/// Idle buffers and their total size in bytes.
static POOL: Mutex<(Vec<Vec<f32>>, usize)> = Mutex::new((Vec::new(), 0));

/// A host buffer that returns to the pool when dropped.
#[derive(Debug)]
pub(super) struct Buf(Vec<f32>);

impl Buf {
    /// A buffer of `len` values whose contents are unspecified (stale values of an earlier use, or zeros): for
    /// results that are written in full before they are read.
    pub fn scratch(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match pool.0.iter().rposition(|b| b.len() == len) {
            Some(i) => {
                let buf = pool.0.swap_remove(i);
                pool.1 -= 4 * len;
                Buf(buf)
            }
            None => Buf(vec![0.0; len]),
        }
    }

    /// A copy of `src`.
    pub fn copy_of(src: &[f32]) -> Self {
        let mut buf = Self::scratch(src.len());
        buf.copy_from_slice(src);
        buf
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let bytes = 4 * buf.len();
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if bytes > 0 && pool.1 + bytes <= MAX_POOLED_BYTES {
            pool.1 += bytes;
            pool.0.push(buf);
        }
    }
}

impl Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}
