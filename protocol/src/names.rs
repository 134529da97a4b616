//! Validated topic and channel names.
//!
//! A name is 1–64 bytes of `[.a-zA-Z0-9_-]`, optionally followed by the suffix `#ephemeral`
//! (which counts towards the 64 bytes). Names are cheap to clone: they share one `Arc<str>`.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Longest valid topic or channel name, suffix included.
pub const MAX_NAME_LENGTH: usize = 64;
/// The suffix that makes a topic or channel ephemeral.
pub const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// Reports whether `name` is a valid topic or channel name.
pub fn is_valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return false;
    }
    let stem = name
        .strip_suffix(EPHEMERAL_SUFFIX.as_bytes())
        .unwrap_or(name);
    !stem.is_empty()
        && stem
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// The raw bytes were not a valid topic or channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {0:?}")]
pub struct InvalidName(pub String);

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the name ends in `#ephemeral`.
            pub fn is_ephemeral(&self) -> bool {
                self.0.ends_with(EPHEMERAL_SUFFIX)
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = InvalidName;
            fn try_from(raw: &[u8]) -> Result<Self, InvalidName> {
                if is_valid_name(raw) {
                    // Valid names are ASCII, so this cannot fail.
                    let text = std::str::from_utf8(raw)
                        .map_err(|_| InvalidName(String::from_utf8_lossy(raw).into_owned()))?;
                    Ok(Self(Arc::from(text)))
                } else {
                    Err(InvalidName(String::from_utf8_lossy(raw).into_owned()))
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidName;
            fn try_from(raw: &str) -> Result<Self, InvalidName> {
                Self::try_from(raw.as_bytes())
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(raw: &str) -> Result<Self, InvalidName> {
                Self::try_from(raw.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                Self::try_from(raw.as_ref()).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A validated topic name.
    TopicName
);
name_type!(
    /// A validated channel name.
    ChannelName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        let max = "a".repeat(64);
        let too_long = "a".repeat(65);
        let ephemeral_max = format!("{}#ephemeral", "a".repeat(54));
        let ephemeral_too_long = format!("{}#ephemeral", "a".repeat(55));
        for good in [
            "t",
            "a.b_c-D9",
            max.as_str(),
            ephemeral_max.as_str(),
            "x#ephemeral",
        ] {
            assert!(is_valid_name(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            too_long.as_str(),
            ephemeral_too_long.as_str(),
            "#ephemeral",
            "t#ephemeral#ephemeral",
            "bad!",
            "a:b",
            "a b",
            "é",
            "a#b",
        ] {
            assert!(!is_valid_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn ephemeral_flag() {
        assert!(TopicName::try_from("t#ephemeral").unwrap().is_ephemeral());
        assert!(!ChannelName::try_from("c").unwrap().is_ephemeral());
    }
}
