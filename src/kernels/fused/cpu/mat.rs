//! The strided matrix view that the fused CPU layers' matrix products take as operands.

/// A strided matrix view: element `(r, c)` of the `rows × cols` matrix is `data[r · rs + c · cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance in `data` between vertically adjacent elements.
    pub rs: usize,
    /// Distance in `data` between horizontally adjacent elements.
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose (no copy: the strides swap).
    pub fn t(self) -> Self {
        Mat { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// Rows `start..start + len` of this matrix.
    pub(super) fn row_block(self, start: usize, len: usize) -> Self {
        Mat { data: &self.data[start * self.rs..], rows: len, ..self }
    }

    /// Whether every element the strides address lies inside `data`.
    pub(super) fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}
