//! Safe display of attacker-supplied strings in logs.

/// Displays an attacker-supplied string for a log line: escaped (no raw CR/LF or other
/// control characters, no non-ASCII) and truncated to 128 characters.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const LIMIT: usize = 128;
        for c in self.0.chars().take(LIMIT) {
            write!(f, "{}", c.escape_default())?;
        }
        if self.0.chars().nth(LIMIT).is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(Shown("a\r\nb").to_string(), "a\\r\\nb");
        assert_eq!(Shown(&"x".repeat(200)).to_string(), format!("{}…", "x".repeat(128)));
    }
}
