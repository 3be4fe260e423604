//! The seed's consent flow on loopback (work in progress).
