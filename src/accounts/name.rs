//! The rule for account names, written once: posts, the CLI, the connect flow and the accounts page
//! all name accounts, and a name one of them accepts must be one every other accepts (it becomes a
//! Redis key and part of the sealing context, and the operator types it).

/// The rule in words, for error messages.
pub const NAME_RULE: &str = "1 to 64 letters, digits, - _ .";

/// The rule as an HTML `pattern` attribute, so the page's form refuses what the server would.
pub const NAME_PATTERN: &str = "[A-Za-z0-9._-]{1,64}";

/// True for names posts can refer to: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// [`valid_name`], with the refusal in words.
pub fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "account name {name:?} is not valid; use {NAME_RULE}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_64_of_the_safe_characters() {
        for ok in ["a", "main.account_2-b", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", &"x".repeat(65), "a b", "a:b", "ä", "a/b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            check_name("a b").unwrap_err(),
            "account name \"a b\" is not valid; use 1 to 64 letters, digits, - _ ."
        );
    }
}
