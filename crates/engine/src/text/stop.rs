//! (helper E fills this in)
