//! The fuzz input read as a stream of decisions (shared by the agent
//! targets).

/// Takes bytes from the input, zeros once it runs out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// The next byte (0 at the end).
    pub fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}
