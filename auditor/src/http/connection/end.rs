//! The two ends of a connection, each the sender of one direction.

use std::ops::{Index, IndexMut};

/// One end of a connection: the first or the second endpoint the
/// connection was opened with, and the bytes it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    First,
    Second,
}

impl End {
    pub const BOTH: [End; 2] = [End::First, End::Second];

    /// The other end.
    pub fn peer(self) -> End {
        match self {
            End::First => End::Second,
            End::Second => End::First,
        }
    }
}

/// One value for each end.
#[derive(Default)]
pub(super) struct PerEnd<T>([T; 2]);

impl<T> PerEnd<T> {
    pub fn new(first: T, second: T) -> PerEnd<T> {
        PerEnd([first, second])
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut()
    }

    /// The end whose value satisfies `found`, the first one first.
    pub fn find(&self, found: impl Fn(&T) -> bool) -> Option<End> {
        End::BOTH.into_iter().find(|&end| found(&self[end]))
    }
}

impl<T> Index<End> for PerEnd<T> {
    type Output = T;

    fn index(&self, end: End) -> &T {
        &self.0[end as usize]
    }
}

impl<T> IndexMut<End> for PerEnd<T> {
    fn index_mut(&mut self, end: End) -> &mut T {
        &mut self.0[end as usize]
    }
}
