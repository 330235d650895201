//! Engine tests.
use super::*;
